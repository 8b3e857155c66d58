# SPDX-License-Identifier: MIT
"""The WSGI application of the gunicorn guide (docs/guides/gunicorn.md):
gunicorn takes its socket from batond (LISTEN_FDS) and says READY=1 itself.

GUIDE_IMPORT_DELAY=SECONDS sleeps at import: a stand-in for an application
that takes that long to import (the guide's overlap section)."""
import os
import time

time.sleep(float(os.environ.get("GUIDE_IMPORT_DELAY", "0")))


def app(environ, start_response):
    body = ("hello from gunicorn, generation %s pid %d\n" % (
        os.environ.get("BATON_GENERATION", "0"), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
