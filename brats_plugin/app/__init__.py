"""The web app (``brats app``): upload a case, segment it, browse every slice with its tumour.

``uploads`` turns uploaded bytes into a validated case without trusting names; ``jobs`` keeps job
state on disk and runs a bounded queue of worker threads; ``results`` segments a job's case with the
one loaded model and writes its exports; ``server`` is the Starlette application (pages, JSON API,
size limit, token); ``service`` assembles them with the preview case and runs uvicorn.

Starlette (with uvicorn) rather than Flask: streaming uploads with a size limit enforced while the
body arrives, a status route that stays responsive while uploads are parsed (async handlers, blocking
work in a thread pool), and an in-process test client; it is small and has no template or ORM layer
we would not use.
"""
