"""afd_async: asynchronous Adversarial Flow Distillation (AFD) of black-box video teachers.

See DESIGN.md (shared with the project) for the architecture and the algorithm.
"""

__version__ = "0.1.0"
