"""Stream scoring: a Redis Streams consumer-group member that answers each event once.

    python -m serving.stream

events.py (an event's instance, checked by the API's rule), results.py (results, dead
letters and acknowledgements in one idempotent step), consumer.py (the loop: read,
claim, retry), metrics.py, app.py (the parts put together), __main__.py. docs/streaming.md
describes the event format and the delivery guarantees.
"""
