# Two commands do everything on a fresh machine (Python 3.11 with venv): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_RUN ?= demo

SYSTEM_PACKAGES := ffmpeg nginx libnginx-mod-rtmp fonts-dejavu-core chromium g++ ninja-build
HLS_JS := 1.7.4

.PHONY: system setup demo test test-slow lint bench gpu-carry gpu-corpus vendor-hls

# ffmpeg (decoding, the stream), nginx with the RTMP module (the tests' local ingest), a font for the overlay text,
# Chromium (the browser the site's tests drive headless), and g++ with ninja (the `cpu` generation backend's C++).
system:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
		echo "installing $(SYSTEM_PACKAGES) with apt-get"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }

# The virtual environment, rebuilt when pyproject.toml changes. It takes 2.8 GB; pip keeps no cache of the wheels,
# which would take about 1 GB more.
$(VENV)/.installed: pyproject.toml
	@free_mb=$$(df -Pm . | awk 'NR==2 {print $$4}'); [ "$$free_mb" -ge 4000 ] || \
		echo "WARNING: $$free_mb MB free on the disk of $(CURDIR); the virtual environment needs about 3000 MB"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --no-cache-dir --upgrade pip
	$(VENV)/bin/pip install --no-cache-dir -e '.[dev]'
	touch $@

# The `cpu` generation backend's C++ extension, compiled once here (about a minute) rather than at first use.
.cache/extensions/cpu_step/.built: wavenet/generation/cpu_step.cpp $(VENV)/.installed
	$(PY) -c "from wavenet.generation.cpu_fused import extension; extension()"
	touch $@

setup: system $(VENV)/.installed .cache/extensions/cpu_step/.built

# Synthesise, prepare, upload to a local S3 server, train from s3:// (about 4 minutes on 2 CPU cores), generate,
# and a 30 s preview of the livestream into a recording.
demo: setup
	$(PY) -m data_prep.demo --name $(DEMO_RUN)

# The default suite (7 minutes on 2 cores); test-slow runs the tests it leaves out (14 minutes: the real-time stream and
# site runs, the Triton interpreter's longer checks, DDP and resumed training). CI runs both.
test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/generation.py

# What a bare GPU machine lacks for bench/gpu_check.sh, as wheels in .gpu/wheels and .gpu/wheels-tests (carry both
# to the device and run `bash bench/gpu_check.sh 1 2` there: see docs/PERFORMANCE.md and docs/QUALITY.md).
gpu-carry: setup
	$(PY) bench/gpu_carry.py

# The real music for the device's `quality` and `ship` calls: the game soundtracks, fetched if missing, packed into
# three parts of 40 MiB with the same validation audio (.gpu/corpus, .gpu/corpus-2, -3; 4 min 21 s on 2 cores,
# measured, and 2 min 22 s more to fetch and prepare the soundtracks).
gpu-corpus: setup
	test -f data/game_music/manifest.jsonl || $(PY) -m data_prep.game_music --out data/game_music
	$(PY) -m data_prep.pack data/game_music --out .gpu/corpus
	$(PY) -m data_prep.pack data/game_music --out .gpu/corpus-2 --part 2
	$(PY) -m data_prep.pack data/game_music --out .gpu/corpus-3 --part 3

# The station's page serves hls.js from the package (no CDN): refresh the vendored copy from npm (needs npm).
vendor-hls:
	cd /tmp && npm pack --silent hls.js@$(HLS_JS) >/dev/null && tar xzf hls.js-$(HLS_JS).tgz package/dist/hls.light.min.js package/LICENSE
	cp /tmp/package/dist/hls.light.min.js wavenet/web/static/vendor/hls.light.min.js
	cp /tmp/package/LICENSE wavenet/web/static/vendor/hls.js-LICENSE
	sha256sum wavenet/web/static/vendor/hls.light.min.js
