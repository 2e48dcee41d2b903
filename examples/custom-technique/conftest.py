"""This repository's model: a saved pipeline folder, registered under a name of its own.

`perfsuite models save tiny-sd pipelines/my-sd` writes the folder (README.md, step 2). Its
baselines are filed under `my-sd`; the call settings below are this model's own.
"""

from __future__ import annotations

from perfsuite.catalog import local_model


def pytest_perfsuite_models(config):
    folder = config.rootpath / "pipelines" / "my-sd"
    return [local_model("my-sd", folder, call_kwargs={"num_inference_steps": 4})]
