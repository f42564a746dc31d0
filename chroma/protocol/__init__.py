"""What every transport of chroma agrees on, declared once: the table of remote operations
(:mod:`chroma.protocol.operations`) and how errors cross the wire
(:mod:`chroma.protocol.error_map`).

Nothing here imports a transport's library (requests, pyarrow, celery) at module level:
``import chroma`` needs none of them.
"""
