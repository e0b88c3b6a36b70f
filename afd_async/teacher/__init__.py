"""Teacher gateway: one job contract for every black-box text-to-video provider."""
