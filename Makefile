# Set-up and the two commands the README names. Installs into the active Python
# (a fresh machine of this kind has no venv; create one first if you prefer).
PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip

.PHONY: setup lock run test test-fast compose-test bench clean

## setup: install the pinned CPU torch, the project with its dev extras, then redis-server, prometheus and
## docker-compose (its file validator; `docker compose up` itself needs a docker daemon: compose-test).
setup:
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
	  || { echo "could not install redis-server: install it with your package manager" >&2; exit 1; }; }
	@command -v prometheus >/dev/null || { \
	  echo "installing prometheus (Debian package; the metrics test scrapes real roles with it)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
	  || { echo "could not install prometheus: install it with your package manager" >&2; exit 1; }; }
	@command -v docker-compose >/dev/null || { \
	  echo "installing docker-compose (Debian package, no daemon; the compose-file tests validate the files with it)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose) \
	  || { echo "could not install docker-compose: install it with your package manager" >&2; exit 1; }; }

## lock: re-resolve the dependency ranges of pyproject.toml in a throw-away venv and write the versions to
## constraints.txt (what `setup` installs). Run it on purpose, then the suite, then commit the file.
lock:
	@d=$$(mktemp -d) && $(PYTHON) -m venv $$d/v \
	  && $$d/v/bin/pip install --quiet torch==2.13.0 && $$d/v/bin/pip install --quiet -e '.[dev]' \
	  && { sed -n '1,3p' constraints.txt; $$d/v/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' | grep -vi '^afd'; } > $$d/c.txt \
	  && mv $$d/c.txt constraints.txt && rm -rf $$d && echo "constraints.txt refreshed: run make test, then commit it"

## run: the main job (embedded default: CPU, no API key, no downloaded weights).
run:
	afd run

## test: the whole test suite (what CI runs), in TEST_WORKERS processes (pytest-xdist). Most of the suite's time
## is role processes starting and waiting on each other, so two workers on two cores take ~35% less wall time.
## Whole modules go to one worker (--dist loadscope): a module's shared `afd run` fixture runs once.
## TEST_WORKERS=0 runs in one process; PYTEST_ADDOPTS="--random-order" shuffles the order (pytest-random-order).
TEST_WORKERS ?= 2
test:
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-fast:
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not slow"

## compose-test: build the images and run the docker-compose smoke test (slow; needs root for docker).
compose-test:
	AFD_COMPOSE_SMOKE=1 $(PYTHON) -m pytest -q -m compose tests/compose

clean:
	rm -rf outputs .pytest_cache
