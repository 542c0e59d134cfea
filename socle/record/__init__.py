"""The shared health record: document metadata, CDA headers and the ANS terminology they use."""
