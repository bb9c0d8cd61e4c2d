"""``rnnlab serve``: a local web app over finished runs that shows a recurrent network
reading its input, step by step (docs/serve.md).

    index.py    the runs under the given folders, each known by an opaque id
    inspect.py  one input through a run's model: per-step answer, hidden state, gates
    app.py      the HTTP app (Starlette): the JSON API under /api/ and the page
    static/     the page itself: HTML, CSS and vanilla JavaScript, no build step

The package sits beside the command line and the API; only ``rnnlab.cli.serve``
imports it, and Starlette and uvicorn (the ``serve`` extra) load only when the
command runs.
"""
