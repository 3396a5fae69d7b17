"""What a flooding notebook can make the grader keep: the executor's output caps fed messages as data,
without a kernel (as nbclient's own tests do), for every path by which output enters the notebook."""
from __future__ import annotations

import nbformat

from hwkit.outputs import CappedClient, output_size


def _client(cell_bytes=1_000, notebook_bytes=3_000, cells=4) -> CappedClient:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass") for _ in range(cells)])
    client = CappedClient(nb)
    client.reset_execution_trackers()        # what nbclient does when it starts a kernel, and per cell:
    client.clear_before_next_output = False
    client.cell_bytes, client.notebook_bytes = cell_bytes, notebook_bytes
    return client


def _msg(kind: str, content: dict, parent: str = "p") -> dict:
    return {"msg_type": kind, "header": {"msg_type": kind, "msg_id": "m"}, "parent_header": {"msg_id": parent},
            "content": content, "metadata": {}}


def _stream(text: str) -> dict:
    return _msg("stream", {"name": "stdout", "text": text})


def _display(data: dict, display_id: str | None = None, kind: str = "display_data") -> dict:
    content = {"data": data, "metadata": {}}
    if display_id:
        content["transient"] = {"display_id": display_id}
    return _msg(kind, content)


def _feed(client: CappedClient, index: int, msg: dict) -> None:
    client.process_message(msg, client.nb.cells[index], index)


def _kept(client: CappedClient) -> int:
    return sum(output_size(out) for cell in client.nb.cells for out in cell.outputs)


def test_a_cell_keeps_its_share_and_says_what_it_dropped():
    client = _client()
    for _ in range(50):
        _feed(client, 0, _stream("x" * 100))
    client.add_truncation_notes(client.nb.cells[0], 0)
    kept = client.nb.cells[0].outputs
    assert 0 < sum(output_size(o) for o in kept[:-1]) <= 1_000
    assert "more characters dropped" in kept[-1]["text"]


def test_no_mime_type_is_exempt():
    """Output that looks like a probe reply is output like any other: probe replies never travel as outputs."""
    client = _client()
    for _ in range(20):
        _feed(client, 0, _display({"application/x-hwkit-reply+json": {"nonce": "n", "blob": "y" * 500}}))
    assert _kept(client) <= 1_000 + 200


def test_the_whole_notebook_has_a_cap_too():
    client = _client(cell_bytes=1_000, notebook_bytes=2_500, cells=6)
    for index in range(6):
        _feed(client, index, _stream("z" * 999))
        client.add_truncation_notes(client.nb.cells[index], index)
    assert client.notebook_full
    assert sum(len(o.get("text", "")) for c in client.nb.cells for o in c.outputs if "hwkit:" not in o.get("text", "")) <= 2_500
    assert "notebook's output limit" in client.nb.cells[5].outputs[-1]["text"]


def test_display_updates_cannot_grow_an_output_past_the_caps():
    """update_display_data replaces an earlier output in place; each update is charged, and past the caps dropped."""
    client = _client()
    _feed(client, 0, _display({"text/plain": "small"}, display_id="d1"))
    for _ in range(30):
        _feed(client, 1, _display({"text/plain": "u" * 400}, display_id="d1", kind="update_display_data"))
    assert _kept(client) <= 1_000
    assert client.dropped_by_cell


def test_widget_messages_are_not_kept():
    client = _client()
    for i in range(100):
        _feed(client, 0, _msg("comm_open", {"comm_id": f"c{i}", "target_name": "jupyter.widget",
                                             "data": {"state": {"_model_module": "x", "blob": "w" * 10_000}}}))
        _feed(client, 0, _msg("comm_msg", {"comm_id": f"c{i}", "data": {"state": {"blob": "w" * 10_000}}}))
    assert not client.widget_state and not client.nb.cells[0].outputs


def test_a_huge_error_keeps_its_name_and_the_end_of_its_traceback():
    client = _client()
    _feed(client, 0, _msg("error", {"ename": "ValueError", "evalue": "v" * 10_000,
                                    "traceback": [f"line {i} " + "t" * 200 for i in range(200)]}))
    error = client.nb.cells[0].outputs[0]
    assert error["ename"] == "ValueError" and len(error["evalue"]) <= 500
    assert error["traceback"][-1].startswith("line 199") and output_size(error) <= 1_000


def test_names_keys_and_empty_outputs_are_not_free():
    """Bytes hidden where a cap might not look (a MIME type, a stream's name) and floods of empty outputs."""
    client = _client(cell_bytes=100_000, notebook_bytes=200_000)
    for i in range(5):
        _feed(client, 0, _display({"k" * 1_000_000 + str(i): "", "text/plain": "x"}))
        _feed(client, 0, _msg("stream", {"name": "n" * 1_000_000, "text": "y"}))
    for _ in range(10_000):
        _feed(client, 1, _stream(""))
    assert _kept(client) <= 200_000
    assert sum(len(cell.outputs) for cell in client.nb.cells) <= 200_000 // 200 + 10


def test_text_that_utf8_cannot_encode_is_made_valid(tmp_path):
    """JSON can carry a lone surrogate ("\\ud800"); the executed notebook, the feedback and the gradebook are UTF-8."""
    from hwkit.notebooks import read_notebook

    client = _client()
    _feed(client, 0, _stream("a\ud800b"))
    _feed(client, 0, _display({"text/plain": "\udfff"}))
    nbformat.writes(client.nb).encode("utf-8")
    path = tmp_path / "t.ipynb"
    path.write_text('{"cells": [{"cell_type": "code", "id": "c1", "source": "x = \\"\\ud800\\"", "metadata": {"hwkit": {"s": "\\udc00"}}, '
                    '"outputs": [], "execution_count": null}], "metadata": {"hwkit": {"student": "\\ud800"}}, '
                    '"nbformat": 4, "nbformat_minor": 5}')
    nb, why = read_notebook(path)
    assert nb is not None, why
    nbformat.writes(nb).encode("utf-8")
