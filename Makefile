# Two commands on a fresh machine with only python3:  `make run`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell python3 -c "import hashlib;print(hashlib.sha1(open('requirements.txt','rb').read()).hexdigest()[:12])")

.PHONY: run test bench setup clean

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

run: $(STAMP)  ## the embedded default: digits, k = 2, r = 1 learned MLP code
	$(PY) train.py $(ARGS)

test: $(STAMP)  ## the whole test suite (CPU-only, offline)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
