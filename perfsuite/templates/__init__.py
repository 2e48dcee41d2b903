"""Package data: the default policy and the files that ``perfsuite init`` writes into a repository.

``policy.toml`` is the policy perfsuite uses when a repository has none; it is the same file as
perfsuite's own ``baselines/policy.toml`` (a unit test keeps the two identical). The other files are
written as they are: ``test_inference.py``, ``perf.yml``, ``noxfile.py`` and ``pytest.ini``.
"""
