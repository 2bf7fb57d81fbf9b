"""The peer: Celery with the Redis broker and result backend, one no-op task."""
import os

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
app = Celery("tasks", broker=f"{REDIS}/4", backend=f"{REDIS}/5")
app.conf.task_default_queue = os.environ.get("BENCH_QUEUE", "antcode-bench")
app.conf.worker_hijack_root_logger = False


@app.task
def noop():
    return None
