"""The station's own website: the live stream as HLS beside a page (player, now playing, health, history) and
"carry it on", where a visitor's clip primes the model. Served by its own process (`python -m wavenet.web.serve`),
started by stream.py, so that no listener or upload can slow the stream's renderer."""
