"""Local HTTP emulators of teacher providers' public contracts (test code).

Each emulator is a starlette app served by uvicorn on 127.0.0.1 in a background
thread (`ServedApp`), with the provider's routes, auth check, job lifecycle,
error bodies and fault injection, so adapters are tested through real sockets.
"""
