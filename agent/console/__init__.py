"""The operator console: sign-in, pages and a JSON API over the platform's state (agent/console/app.py).

`dataops console` serves it alone, `dataops serve` beside the pipelines (agent/console/cli.py). Importing this
package imports nothing heavy: FastAPI, uvicorn and Jinja2 load when the console runs.
"""
