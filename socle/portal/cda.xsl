<?xml version="1.0" encoding="UTF-8"?>
<!-- A CDA R2 document as readable HTML for the patient's page: the header (title, date, patient,
     author, organisation) and each section's title and narrative. Only the elements written
     here reach the page: the narrative's paragraphs, lists, tables and line breaks become their
     HTML equivalents, anything else its text; no attribute of the document is copied (no link,
     no style, no script can come from it), and text is escaped by the serializer. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:v3="urn:hl7-org:v3" exclude-result-prefixes="v3">
  <xsl:output method="html" encoding="UTF-8" indent="no"/>

  <xsl:template match="/">
    <div class="socle-cda">
      <xsl:apply-templates select="v3:ClinicalDocument"/>
    </div>
  </xsl:template>

  <xsl:template match="v3:ClinicalDocument">
    <dl class="fr-mb-3w">
      <xsl:if test="v3:title">
        <dt>Titre</dt><dd><xsl:value-of select="v3:title"/></dd>
      </xsl:if>
      <xsl:for-each select="v3:recordTarget/v3:patientRole/v3:patient/v3:name[1]">
        <dt>Patient</dt><dd><xsl:call-template name="name"/></dd>
      </xsl:for-each>
      <xsl:for-each select="v3:author[1]/v3:assignedAuthor/v3:assignedPerson/v3:name[1]">
        <dt>Auteur</dt><dd><xsl:call-template name="name"/></dd>
      </xsl:for-each>
      <xsl:for-each select="v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization/v3:name[1]">
        <dt>Établissement</dt><dd><xsl:value-of select="."/></dd>
      </xsl:for-each>
    </dl>
    <xsl:apply-templates select="v3:component/v3:structuredBody/v3:component/v3:section"/>
    <xsl:if test="v3:component/v3:nonXMLBody">
      <p>Ce document contient un fichier joint (par exemple un PDF) : ouvrez-le avec le lien ci-dessus.</p>
    </xsl:if>
  </xsl:template>

  <xsl:template name="name">
    <xsl:for-each select="v3:prefix | v3:given | v3:family">
      <xsl:if test="position() &gt; 1"><xsl:text> </xsl:text></xsl:if>
      <xsl:value-of select="."/>
    </xsl:for-each>
  </xsl:template>

  <xsl:template match="v3:section">
    <section class="fr-mb-3w">
      <h2 class="fr-h5"><xsl:value-of select="v3:title"/></h2>
      <xsl:apply-templates select="v3:text"/>
      <xsl:apply-templates select="v3:component/v3:section"/>
    </section>
  </xsl:template>

  <xsl:template match="v3:text">
    <div><xsl:apply-templates/></div>
  </xsl:template>

  <xsl:template match="v3:paragraph"><p><xsl:apply-templates/></p></xsl:template>
  <xsl:template match="v3:br"><br/></xsl:template>
  <xsl:template match="v3:list[@listType='ordered']"><ol><xsl:apply-templates select="v3:item"/></ol></xsl:template>
  <xsl:template match="v3:list"><ul><xsl:apply-templates select="v3:item"/></ul></xsl:template>
  <xsl:template match="v3:item"><li><xsl:apply-templates/></li></xsl:template>
  <xsl:template match="v3:table">
    <div class="fr-table"><table><xsl:apply-templates select="v3:caption | v3:thead | v3:tbody | v3:tr"/></table></div>
  </xsl:template>
  <xsl:template match="v3:caption"><caption><xsl:apply-templates/></caption></xsl:template>
  <xsl:template match="v3:thead"><thead><xsl:apply-templates select="v3:tr"/></thead></xsl:template>
  <xsl:template match="v3:tbody"><tbody><xsl:apply-templates select="v3:tr"/></tbody></xsl:template>
  <xsl:template match="v3:tr"><tr><xsl:apply-templates select="v3:th | v3:td"/></tr></xsl:template>
  <xsl:template match="v3:th"><th scope="col"><xsl:apply-templates/></th></xsl:template>
  <xsl:template match="v3:td"><td><xsl:apply-templates/></td></xsl:template>
  <xsl:template match="v3:content | v3:linkHtml | v3:sub | v3:sup | v3:footnote"><xsl:apply-templates/></xsl:template>
  <!-- anything else of the narrative (renderMultiMedia, comments…): its text only -->
  <xsl:template match="*"><xsl:apply-templates/></xsl:template>
  <xsl:template match="text()"><xsl:value-of select="."/></xsl:template>
  <xsl:template match="comment() | processing-instruction()"/>
</xsl:stylesheet>
