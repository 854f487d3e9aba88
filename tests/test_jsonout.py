"""jsonout.dump: the JSON value json.dump writes, in its indent=1 layout but for the rows list
(one compact row a line), at C-encoder speed."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from inspector import jsonout

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids,
                                                              max_size=3),
    max_leaves=8,
)
OBJECTS = st.dictionaries(st.sampled_from(["tensors", "a", "b\n", "path"]), VALUES, max_size=4)


def _dumped(data: Any) -> str:
    out = io.StringIO()
    jsonout.dump(data, out)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(OBJECTS)
def test_the_same_value_and_json_dumps_layout_outside_the_rows(data: dict[str, Any]) -> None:
    text = _dumped(data)
    assert json.loads(text) == data
    rows = data.get("tensors")
    if not (isinstance(rows, list) and rows):
        assert text == json.dumps(data, indent=1)


def test_one_row_a_line() -> None:
    rows = [{"name": f"w{i}", "shape": [i, 2]} for i in range(3)]
    text = _dumped({"path": "m.pt", "tensors": rows, "notes": ["x"]})
    lines = text.splitlines()
    assert lines[3:6] == [f'  {json.dumps(r)},' for r in rows[:2]] + [f"  {json.dumps(rows[2])}"]
    assert json.loads(text)["tensors"] == rows
