"""The authorisation server's endpoints, one module per flow around :class:`AuthServer`.

Browser flow (authorisation code + PKCE):

1. ``GET /auth/authorize`` (:mod:`.authorize`) checks the request, keeps it as a pending request
   (id in a cookie) and shows the login choice;
2. the user signs in: a professional through Pro Santé Connect (:mod:`.professional_login`:
   ``POST /auth/psc/start`` → PSC → ``GET /auth/psc/callback``), a patient with
   ``POST /auth/patient`` (:mod:`.patient_login`);
3. ``GET /auth/consent`` lists the scopes; ``POST /auth/consent`` issues the code and sends the
   browser back to the client with ``code``, ``state`` and ``iss`` (RFC 9207) (:mod:`.consent`);
4. the client redeems the code at ``POST /auth/token`` (:mod:`.token`).

Then :mod:`.token_status` (revocation, introspection), :mod:`.userinfo` and :mod:`.discovery`
(the metadata documents and the JWKS).
"""

from .server import AuthServer, Flow

__all__ = ["AuthServer", "Flow"]
