"""`afd teacher-actor`: prompts → teacher gateway → teacher cache, as a process.

Compose config, build the provider client, gateway and prompt source
(`afd_async.teacher.actor`), run until the source ends or SIGTERM. On SIGTERM
the actor stops taking prompts, lets in-flight jobs finish for
`teacher.gateway.drain_timeout_s`, hands the rest back to the queue (their
journal records stay resumable by job id) and exits 0. Exit 3: the account
failed (bad key, quota exhausted); 2: missing configuration or credentials, or
a prompt file (`teacher.source.kind=file`) without one usable line. Bad lines of
a usable file are logged with their line number, counted (`bad_records`, the
dead-lettered job metric) and put on the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from afd_async.config.root import RootConfig

log = logging.getLogger("afd.teacher-actor")


async def _run(cfg: RootConfig) -> int:
    from afd_async import metrics
    from afd_async.physics import PromptFileError
    from afd_async.teacher.actor import (TeacherActor, build_gateway, connect_redis, make_callback_receiver,
                                         make_teacher_client)
    from afd_async.config.credentials import CredentialError, load_teacher_credentials, load_webhook_secret

    t, c = cfg.teacher, cfg.cluster
    try:
        creds = load_teacher_credentials(t.provider)
        if t.provider == "local" and not creds:
            raise CredentialError("the local teacher server requires a key: set AFD_TEACHER_API_KEY (or _FILE)")
        receiver = make_callback_receiver(cfg, load_webhook_secret())
        redis = connect_redis(c.redis_url, c)
    except (CredentialError, ValueError, OSError) as e:  # OSError: the callback port is taken
        log.error("cannot start the teacher actor: %s", e)
        return 2
    m, mport = metrics.start_role_metrics("teacher-actor", port=c.metrics_port, host=c.host, tries=c.metrics_port_tries)
    client = make_teacher_client(cfg, creds, callback_url=receiver.url if receiver is not None else None)
    try:
        if receiver is not None:
            await receiver.start(client)  # type: ignore[arg-type]
        actor = TeacherActor(cfg, build_gateway(cfg, redis, client, metrics=m, callbacks=receiver), redis, metrics=m)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, actor.stop)
        print(f"teacher-actor {actor.owner} started ({t.provider}, source={t.source.kind}, "
              f"concurrency={t.concurrency}, metrics :{mport}, callbacks "
              f"{'on :' + str(receiver.port) if receiver is not None else 'off'})", flush=True)
        report = await actor.run()
    except PromptFileError as e:  # bad lines alone are logged and counted by the actor; this file has no good one
        log.error("teacher actor stopped before any job: %s", e)
        return 2
    finally:
        if receiver is not None:
            await receiver.stop()
        await client.aclose()
        await redis.aclose()
    print(f"teacher-actor done: {report}", flush=True)
    return 3 if report.halted else 0


def main(cfg: RootConfig) -> int:
    """Run the teacher actor; returns the exit code."""
    return asyncio.run(_run(cfg))
