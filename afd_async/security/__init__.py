"""Who may do what: per-role Redis ACL users (`redis_acl`), CURVE keys from files for the ZeroMQ
feed and weight channels (`curve`), and `afd run`'s own credentials (`local`).

Threat model: README ("Threat model"); details and tests: docs/SECURITY.md.
"""
