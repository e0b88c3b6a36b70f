"""Process wiring: the `afd run` launcher and its supervisor."""
