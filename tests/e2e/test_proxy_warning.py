"""A ",proxy" listener without --proxy-from believes any client's PROXY header, so anyone
who can reach it can forge the client address: tlsfront says so at start-up (WARN), and
stays quiet when --proxy-from limits who may send the header."""
from tfcommon import check, finish, make_certs, start_tlsfront

certs = make_certs()
# The ",proxy" listener comes first: once the second listener's line is out, any warning
# about the first one has been written.
LISTEN = ["--listen", "127.0.0.1:0,proxy", "--listen", "127.0.0.1:0"]
BOTH = r"listening on [^\n]*\n(?:[^\n]*\n)*?[^\n]*listening on "
WARN = r"warn server: listener 127\.0\.0\.1:\d+ takes PROXY headers from any source"

open_tf, _ = start_tlsfront(LISTEN + ["--certs", certs, "--backend", "127.0.0.1:9"],
                            name="tlsfront-open")
check(open_tf.wait_for(BOTH, 20) is not None, "open: both listeners up")
check(open_tf.wait_for(WARN, 5) is not None, "without --proxy-from: the forgery warning is logged")

closed_tf, _ = start_tlsfront(LISTEN + ["--certs", certs, "--backend", "127.0.0.1:9",
                                        "--proxy-from", "127.0.0.1"], name="tlsfront-closed")
check(closed_tf.wait_for(BOTH, 20) is not None, "closed: both listeners up")
check("PROXY headers from any source" not in closed_tf.stderr_text(),
      "with --proxy-from: no warning")
finish()
