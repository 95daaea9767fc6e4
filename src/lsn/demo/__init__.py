"""The embedded demo: a synthetic multilingual world, a tokenizer trainer and `python -m lsn.demo`."""
