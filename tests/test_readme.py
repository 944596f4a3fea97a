"""The README's model-writing example runs and gives lme4's REML criterion."""

import re

import pytest

from conftest import ROOT


def test_readme_model_example():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Writing a model.*?```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["fit"].criterion == pytest.approx(1743.628272, rel=1e-7)
