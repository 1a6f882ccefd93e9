# The two commands of the README. Both do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test install clean

demo: $(INSTALLED)
	$(VENV)/bin/samband demo $(ARGS)

test: $(INSTALLED)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(VENV)/bin/python -m pytest $(ARGS)

install: $(INSTALLED)

# Reinstalls only when pyproject.toml changes.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .samband .pytest_cache
