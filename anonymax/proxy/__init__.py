"""The anonymizing proxy: OpenAI's chat-completions API in front of any upstream, with every
image of every request anonymized before it leaves the process.

An application that uses the `openai` client gets privacy by changing its `base_url`:

  python launch/serve.py --workdir=workdirs/synthetic --upstream=https://api.openai.com/v1
  client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="<the proxy's token>")

or, in Python:

  from anonymax import methods, proxy
  app = proxy.create_app(methods.load_method("face-blur"), upstream=URL, upstream_key=KEY)

Modules: `app` (the routes and the order of checks), `request` (the body's images found and
checked), `images` (decoding, limits, metadata-free re-encoding), `anonymizing` (the work on one
request, in a thread), `remote` (fetching http(s) images), `upstream` (sending on and relaying
back, streams too), `metrics`, `limits`, `errors` (OpenAI's error format), `background` (serving
in a thread) and `recording_upstream` (a stand-in upstream for tests and benchmarks).
"""

from anonymax.proxy.app import create_app
from anonymax.proxy.background import Running, serve_in_thread
from anonymax.proxy.errors import ProxyError
from anonymax.proxy.limits import Limits
