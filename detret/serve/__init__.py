"""``detret serve``: a catalogue searched over HTTP (FastAPI on uvicorn) and its web page.

- ``engine.py``: photos -> garments -> descriptors -> results (the models, loaded once);
- ``batcher.py``: concurrent requests batched through the engine, bounded queue;
- ``uploads.py``: what a request may send, checked, with the error a client can act on;
- ``app.py``: the routes; ``admin.py``: catalogue changes behind a bearer token;
- ``metrics.py``: Prometheus counters and latency histograms;
- ``static/``: the page (no CDN, works offline).
"""
