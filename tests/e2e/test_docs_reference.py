"""The docs cannot drift from the code: the option list in docs/configuration.md is the
"Options:" part of --help verbatim, every metric family the code emits is named in
docs/operations.md, and every option that needs a restart (--help) is listed there too."""
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
finish()
