"""The docs cannot drift from the code: the option list in docs/configuration.md is the
"Options:" part of --help verbatim, every metric family the code emits is named in
docs/operations.md, every option that needs a restart (--help) is listed there too, and
the access log reference there is what `tlsfront --list-end-reasons` prints from the code's
tables: every end= reason and every field, each documented."""
import os
import re
import subprocess

from tfcommon import BIN, SRC, check, finish

helptext = subprocess.run([BIN, "--help"], stdout=subprocess.PIPE, timeout=30).stdout.decode()
opts = helptext.split("Options:\n", 1)[1].rstrip("\n")
conf = open(os.path.join(SRC, "docs", "configuration.md")).read()
m = re.search(r"## All options\n\n```\n(.*?)\n```", conf, re.S)
check(m is not None and m.group(1) == opts,
      "docs/configuration.md 'All options' equals --help (regenerate it from tlsfront --help)")

ops = open(os.path.join(SRC, "docs", "operations.md")).read()
names = set()
for d, _, files in os.walk(os.path.join(SRC, "src")):
    for f in files:
        if f.endswith(".c"):
            names |= set(re.findall(r'"(tlsfront_[a-z_]+)"', open(os.path.join(d, f)).read()))
check(len(names) > 10, "metric names found in the sources (%d)" % len(names))
missing = sorted(n for n in names if n not in ops)
check(not missing, "every metric is named in docs/operations.md (missing: %s)" % missing)

restart = helptext.split('logs "needs a restart"):\n', 1)[1].split(".\n\n", 1)[0]
flags = re.findall(r"--[a-z-]+", restart)
missing = [f for f in flags if "`%s`" % f not in ops]
check(len(flags) > 10 and not missing,
      "every restart-only option is listed in docs/operations.md (missing: %s)" % missing)
ref = subprocess.run([BIN, "--list-end-reasons"], stdout=subprocess.PIPE,
                     timeout=30).stdout.decode()
reasons = re.findall(r"^\| `([a-z0-9_]+)` \| (.+) \|$", ref.split("| end= |", 1)[-1], re.M)
check(len(reasons) > 40 and all(d.strip() for _, d in reasons),
      "--list-end-reasons prints every end= reason with its meaning (%d)" % len(reasons))
for must in ("done", "hold_overflow", "http_405", "not_allowed", "storage_unavailable"):
    check(any(r == must for r, _ in reasons), "end=%s is in the table" % must)
m = re.search(r"<!-- generated: tlsfront --list-end-reasons -->\n(.*?)<!-- end generated -->",
              ops, re.S)
check(m is not None, "docs/operations.md has the generated access log reference")
documented = m.group(1) if m else ""
missing = [r for r, _ in reasons if "| `%s` |" % r not in documented]
check(not missing, "every end= reason is documented in docs/operations.md (missing: %s)"
      % missing)
check(documented == ref,
      "docs/operations.md's access log reference equals --list-end-reasons (regenerate it)")
finish()
