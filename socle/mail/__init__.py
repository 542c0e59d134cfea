"""Mail the platform sends: the outbound relay every service shares (subscription e-mail
channel, messaging, notifications). Below every service, like `socle/workers/`."""
