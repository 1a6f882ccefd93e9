# The two commands of the README. Both do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test check test-unit dashboard-pictures privacy-fuzz order-acceptance faults deploy-check install clean

demo: $(INSTALLED)
	$(VENV)/bin/samband demo $(ARGS)

test: $(INSTALLED)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq npm >/dev/null)
	$(VENV)/bin/python -m pytest -n $${SAMBAND_TEST_PROCESSES:-2} --dist loadfile $(ARGS)

# Lint, format and type checks (ruff and mypy, configured in pyproject.toml); CI runs them before the tests.
check: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The tests that need no Kafka broker (about 390, under a minute): marked by tests/conftest.py.
test-unit: $(INSTALLED)
	$(VENV)/bin/python -m pytest -m "not kafka" $(ARGS)

# Refreshes docs/dashboard-wide.png and docs/dashboard-narrow.png: pictures of the dashboard at the
# end of a demo run, its charts drawn from the run's own history (tests write nothing into the tree).
dashboard-pictures: $(INSTALLED)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(VENV)/bin/samband demo --dashboard-pictures $(CURDIR)/docs $(ARGS)

# The acceptance run of docs/security.md, large: SAMBAND_FUZZ_PERSONS, SAMBAND_FUZZ_SEED to choose.
privacy-fuzz: $(INSTALLED)
	SAMBAND_FUZZ_PERSONS=$${SAMBAND_FUZZ_PERSONS:-100} SAMBAND_FUZZ_SETTLE_TIMEOUT=$${SAMBAND_FUZZ_SETTLE_TIMEOUT:-600} \
		$(VENV)/bin/python -m pytest tests/privacy/test_privacy_fuzz.py -s --timeout 3600 $(ARGS)

# Issue 13's order acceptance in full: each mode 50 times over (SAMBAND_ORDER_ROUNDS, SAMBAND_ORDER_PERSONS).
order-acceptance: $(INSTALLED)
	SAMBAND_ORDER_ROUNDS=$${SAMBAND_ORDER_ROUNDS:-50} SAMBAND_ORDER_PERSONS=$${SAMBAND_ORDER_PERSONS:-10} \
		$(VENV)/bin/python -m pytest tests/operations/test_person_order.py -s $(ARGS)

# Issue 14's fault runs (docs/reliability.md): the broker down 5 minutes with the default write
# wait, stopped and killed; two workers; a slow subscriber; a paused one behind its memory limit; a
# subscriber refused 3 minutes, then answering 500 for one, then up; and the kill -9 runs of the suite.
# SAMBAND_FAULT_OUTAGE_SECONDS, SAMBAND_FAULT_REQUEST_TIMEOUT, SAMBAND_FAULT_BROKER_STOPS,
# SAMBAND_FAULT_SUBSCRIBER_REFUSED_SECONDS, SAMBAND_FAULT_SUBSCRIBER_500_SECONDS to choose. And issue 16's
# scale-out on a three-node cluster (tests/faults/test_cluster_scale_out.py): SAMBAND_FAULT_CLUSTER_EVENTS.
FAULT_RUNS := tests/faults tests/routing/test_crash.py tests/delivery/test_delivery_crash.py \
	tests/connectors/test_connector_feed_crash.py tests/delivery/test_delivery_isolation.py tests/delivery/test_circuit_breaker.py
# The broker runs stop and kill brokers of their own, so an external cluster is not used here.
faults: $(INSTALLED)
	env -u KAFKA_BOOTSTRAP_SERVERS SAMBAND_FAULT_OUTAGE_SECONDS=$${SAMBAND_FAULT_OUTAGE_SECONDS:-300} \
		SAMBAND_FAULT_REQUEST_TIMEOUT=$${SAMBAND_FAULT_REQUEST_TIMEOUT:-40} \
		SAMBAND_FAULT_BROKER_STOPS=$${SAMBAND_FAULT_BROKER_STOPS:-stop,kill} \
		SAMBAND_FAULT_SUBSCRIBER_REFUSED_SECONDS=$${SAMBAND_FAULT_SUBSCRIBER_REFUSED_SECONDS:-180} \
		SAMBAND_FAULT_SUBSCRIBER_500_SECONDS=$${SAMBAND_FAULT_SUBSCRIBER_500_SECONDS:-60} \
		SAMBAND_FAULT_CLUSTER_EVENTS=$${SAMBAND_FAULT_CLUSTER_EVENTS:-50000} \
		$(VENV)/bin/python -m pytest $(FAULT_RUNS) -s -rs $(ARGS)

# What can be checked of deploy/ here (no container engine or Kubernetes cluster): the Kustomize set
# builds, checkov finds no failed check, and the package installs as the Containerfile installs it.
deploy-check:
	deploy/check.sh

install: $(INSTALLED)

# Reinstalls only when pyproject.toml changes.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .samband .pytest_cache
