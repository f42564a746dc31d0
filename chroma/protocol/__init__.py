"""What every transport of chroma agrees on, declared once: how errors cross the wire
(:mod:`chroma.protocol.error_map`).

Nothing here imports a transport's library (requests, pyarrow, celery) at module level:
``import chroma`` needs none of them.
"""
