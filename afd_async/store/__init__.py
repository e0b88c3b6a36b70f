"""The Redis store every layer shares: the run's key schema (`keys`), role connections (`connect`),
one-round-trip command batches with large arguments sent uncopied (`pipeline`) and the private
`redis-server` that `afd run` and the tests start (`redis_server`).

It sits low (it imports only `config`), so the teacher, replay, security, runtime and launch
layers all import it downward."""
