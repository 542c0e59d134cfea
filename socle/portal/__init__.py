"""The site people open: the front door (home, accessibility statement, legal notices, privacy),
the patient's space ("Mes documents") and the navigation each kind of user gets. Server-rendered
French pages on `socle/web`, reading through the engine with the signed-in person's own Access
(the session middleware of `socle/auth/sessions.py` puts it in the request, as the API's
authentication does for a token)."""
