"""Offline fakes of Google's services, used by the tests, the benchmarks and `veo demo`: a
Gemini API that speaks the real wire protocol, and a Flow site that behaves like the real UI
where the automation depends on it."""

from typing import Any


async def start_beside_web(settings: Any, svc: Any) -> list[Any]:
    """``VEO_SANDBOX=1``: serve the fakes from the web process where the settings point
    (PORT+1, PORT+2 by default), give the sandbox a Flow login and an operator key, so a web
    process and ``arq veo.worker.Settings`` work offline with no other set-up."""
    import secrets
    from urllib.parse import urlsplit

    from veo import flow_state, logs
    from veo.keypool import KeyPool
    from veo.sandbox.flow import FakeFlow
    from veo.sandbox.gemini import FakeGemini

    started: list[Any] = []
    g, f = urlsplit(settings.gemini_base_url or ""), urlsplit(settings.flow_base_url)
    if g.hostname in ("127.0.0.1", "localhost") and g.port:
        gem = FakeGemini()
        gem.delay = 3.0
        await gem.start(port=g.port)
        started.append(gem)
        pool_keys = [k for k in await svc.db.all_keys()
                     if k.user_id is None and k.status != "invalid"]
        if not settings.gemini_api_keys and not pool_keys:
            # an operator key the fake accepts, so jobs route to the API backend
            await KeyPool(svc.db, svc.box, settings).sync_operator_pool(
                (f"AIza-sandbox-{secrets.token_hex(16)}",))
    if f.hostname in ("127.0.0.1", "localhost") and f.port:
        flow = FakeFlow()
        flow.delay = 3.0
        await flow.start(port=f.port)
        started.append(flow)
        # the fake's sessions live in this process: store a fresh login for the worker
        await flow_state.write(svc.storage, svc.box, settings.flow_account,
                               flow.storage_state(), settings.flow_storage_state_key)
    logs.get_logger("veo.sandbox").info("sandbox.started", fakes=[type(x).__name__
                                                                  for x in started])
    return started
