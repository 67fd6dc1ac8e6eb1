"""Random state in checkpoints: each process gets its own back on resume."""

from __future__ import annotations

import torch

from bof.engine.checkpoint import restore_rng, rng_states
from bof.engine.distributed import Context

CPU = torch.device("cpu")


def state_of(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.get_rng_state()


def draws_after(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(4)


def test_one_process_resumes_its_own_draws():
    context = Context(0, 1, 0, CPU)
    torch.manual_seed(5)
    saved = {"rng": rng_states(context)}
    expected = torch.rand(4)
    torch.manual_seed(9)
    restore_rng(saved, context)
    assert torch.equal(torch.rand(4), expected)


def test_each_rank_takes_its_own_state():
    """Rank r of a two-process run restores rank r's state, not rank 0's (the samplers of each
    rank draw for its own images)."""
    saved = {"rng": [{"cpu": state_of(1)}, {"cpu": state_of(2)}]}
    for rank, seed in ((0, 1), (1, 2)):
        torch.manual_seed(99)
        restore_rng(saved, Context(rank, 2, rank, CPU))
        assert torch.equal(torch.rand(4), draws_after(seed))


def test_a_checkpoint_written_before_per_rank_states_still_resumes():
    saved = {"torch_rng": state_of(3)}
    torch.manual_seed(99)
    restore_rng(saved, Context(0, 1, 0, CPU))
    assert torch.equal(torch.rand(4), draws_after(3))


def test_another_number_of_processes_takes_rank_0s_state_and_says_so(capsys):
    """Rank 3 of 4 resuming a two-process checkpoint has no state of its own: it takes rank 0's;
    the main process says the draws differ, the others stay quiet."""
    saved = {"rng": [{"cpu": state_of(1)}, {"cpu": state_of(2)}]}
    restore_rng(saved, Context(3, 4, 3, CPU))
    assert torch.equal(torch.rand(4), draws_after(1))
    assert capsys.readouterr().out == ""
    restore_rng(saved, Context(0, 4, 0, CPU))
    assert "written by 2 processes, this run has 4" in capsys.readouterr().out
