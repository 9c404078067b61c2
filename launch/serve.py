r"""Serves OpenAI's chat-completions API with every image anonymized before it goes upstream.

  OPENAI_API_KEY=sk-... python launch/serve.py --workdir=W --upstream=https://api.openai.com/v1
  # then, in the application, only the base URL changes:
  client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")

The same as `anonymax serve` (`anonymax.proxy.command`); `--help` lists every flag.
"""

import sys

from anonymax.proxy import command

if __name__ == "__main__":
  command.main(sys.argv[1:], prog="python launch/serve.py")
