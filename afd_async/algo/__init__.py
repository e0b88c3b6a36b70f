"""The AFD algorithm: losses (paper equations) and policy bookkeeping."""
