"Every paper that is a library run: one source of truth for its parameters, whether run by papermill or by `llmrec run`."
import pytest

from llmrec_nb.report import load_profile, notebook_defaults, notebook_parameters
from llmrec_nb.reproduce import library_papers, paper_module
from llmrec_nb.core import repo_root

PAPERS = library_papers()
PROFILES = ("smoke", "quick", "paper")


def test_the_five_papers_are_library_runs():
    assert {"tallrec", "itdr", "soft", "molorec", "llama4rec"} <= set(PAPERS), PAPERS


@pytest.mark.parametrize("paper", PAPERS)
def test_notebook_parameters_are_the_quick_profile(paper):
    "Run All in JupyterLab runs the quick profile: the parameters cell holds every setting, with its quick value."
    cell = notebook_defaults(repo_root() / "nbs" / "paper" / f"{paper}.ipynb")
    assert cell.pop("profile") == "quick" and cell.pop("out_dir") is None and cell.pop("work_dir") is None
    assert cell == paper_module(paper).Config.from_profile("quick").as_dict()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("paper", PAPERS)
def test_a_profile_means_the_same_to_the_notebook_and_to_the_config(paper, profile):
    "Papermill fills what a profile leaves out from the notebook's (quick) values, `from_profile` from the paper's: they must agree."
    nb = notebook_defaults(repo_root() / "nbs" / "paper" / f"{paper}.ipynb")
    through_notebook = {k: v for k, v in {**nb, **notebook_parameters(load_profile(profile), paper, profile, "")}.items()
                        if k not in ("profile", "out_dir", "work_dir")}
    cfg = paper_module(paper).Config.from_profile(profile).as_dict()
    differ = {k: (through_notebook[k], cfg[k]) for k in cfg if through_notebook.get(k) != cfg[k]}
    assert not differ, f"{paper} under {profile}: notebook vs Config differ on {differ}"
