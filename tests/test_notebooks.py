"""Every notebook runs top to bottom in a real Jupyter kernel (nbclient), as a person would run it.

Each notebook runs its jobs itself through the jobs' Python API. Its kernel joins the test session's Ray (its
address given as RAY_ADDRESS) instead of starting one per notebook, and writes its job outputs and figures to a
temporary folder (TEXTBATCH_NOTEBOOK_OUTPUT, TEXTBATCH_FIGURES) rather than into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT = 300
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def kernel_env(ray_session, tmp_path_factory):
    """The environment of each notebook's kernel, and the folder it writes to."""
    folder = tmp_path_factory.mktemp("notebooks")
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}  # keep Jupyter's inline plots
    env.update(
        RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
        TEXTBATCH_NOTEBOOK_OUTPUT=str(folder / "outputs"),
        TEXTBATCH_FIGURES=str(folder / "figures"),
    )
    return env, folder


def run_notebook(name: str, env: dict[str, str], folder: Path) -> nbformat.NotebookNode:
    """Execute notebooks/<name> in its own folder (as Jupyter would) and return it with its outputs; the executed
    copy is kept in `folder` to look at when a test fails."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute(env=env)
    finally:
        nbformat.write(notebook, folder / name)
    return notebook


def cell(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    found = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {tag!r}"
    return found[0]


def text_of(code_cell: nbformat.NotebookNode) -> str:
    """Everything a code cell showed: printed text and the plain-text form of its displayed values."""
    parts = []
    for output in code_cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def images_in(code_cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for output in code_cell.outputs)


def test_committed_notebooks_have_no_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {path.name for path in paths} == {"embeddings.ipynb", "generation.ipynb", "labels.ipynb"}
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for code_cell in (c for c in notebook.cells if c.cell_type == "code"):
            assert code_cell.outputs == [] and code_cell.execution_count is None, f"{path.name} has outputs"


def test_embeddings_notebook(kernel_env):
    env, folder = kernel_env
    notebook = run_notebook("embeddings.ipynb", env, folder)
    assert "rows:               360" in text_of(cell(notebook, "run-job"))
    read = text_of(cell(notebook, "read-output"))
    assert "embed job" in read and "360 rows, 359 embedded" in read and "text is null" in read
    neighbours = text_of(cell(notebook, "neighbours"))
    assert "cosine" in neighbours and len(neighbours.splitlines()) >= 9  # header + 8 neighbours
    assert images_in(cell(notebook, "pca")) == 1 and images_in(cell(notebook, "pairs")) == 1
    assert "groups of near-duplicates" in text_of(cell(notebook, "groups"))
    figure = folder / "figures" / "embeddings_pca.png"
    assert figure.read_bytes().startswith(PNG_SIGNATURE) and figure.stat().st_size > 20_000


def test_generation_notebook(kernel_env):
    env, folder = kernel_env
    notebook = run_notebook("generation.ipynb", env, folder)
    assert "rows:               40" in text_of(cell(notebook, "run-job"))
    read = text_of(cell(notebook, "read-output"))
    assert "generate job" in read and "'summarize: {text}'" in read and "40 rows" in read
    lengths = cell(notebook, "lengths")
    assert images_in(lengths) == 1 and "n_generated_tokens" in text_of(lengths)
    samples = text_of(cell(notebook, "samples"))
    assert "generated_text" in samples and len(samples.splitlines()) >= 8


def test_labels_notebook(kernel_env):
    env, folder = kernel_env
    notebook = run_notebook("labels.ipynb", env, folder)
    runs = text_of(cell(notebook, "run-jobs"))
    assert runs.count("rows:               80") == 2 and "entities:" in runs
    read = text_of(cell(notebook, "read-outputs"))
    assert "label job" in read and "classify job" in read and "80 texts tagged" in read
    assert images_in(cell(notebook, "entity-types")) == 1 and images_in(cell(notebook, "classes")) == 1
    assert "mean_score" in text_of(cell(notebook, "top-entities"))
    highlighted = [out for out in cell(notebook, "highlighted").outputs if "text/html" in out.get("data", {})]
    assert len(highlighted) == 1 and highlighted[0].data["text/html"].count("<mark ") >= 5
