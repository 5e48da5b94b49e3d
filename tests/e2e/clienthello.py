"""Real TLS ClientHellos as bytes, for sending by hand on a plain socket: used by the e2e
tests (test_pending.py) and the benchmarks (bench/pending_mem.py, bench/flood.py). Made by
Python's ssl over memory BIOs; no network, no side effects on import."""
import ssl


def hello_context():
    """A client context for client_hello: verifies nothing (only its ClientHello is used) and
    loads no CA store; make one and reuse it when making many hellos."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_hello(name, ctx=None):
    """The first flight of a TLS client for SNI name (with ctx, or a fresh hello_context())."""
    out = ssl.MemoryBIO()
    obj = (ctx or hello_context()).wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
