# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""What the recipe trainers share on top of `transformers.Trainer`.

- Checkpoints are written atomically: the Trainer writes `checkpoint-N` into a hidden staging folder of the run
  directory, which is renamed to `checkpoint-N` once complete (`get_last_checkpoint` never sees a partial one). The
  final `save_model()` folder is staged the same way, file by file.
- The recipes' own random streams (mask generators, mixup) are objects with `state_dict()` / `load_state_dict()`;
  their states go into every checkpoint (`recipe_state_{rank}.pt`) and come back on `train(resume_from_checkpoint=...)`,
  so a resumed run draws the same masks as an uninterrupted one. On rank `r` of a distributed run each stream is
  re-seeded with `seed + r` so that ranks draw different masks.
- Loss components (`loss_cls`, `loss_distill`, ...) are averaged over the logging window and across processes, and
  logged next to `loss`.
- Weight decay as in the official code: none for biases, 1-D parameters (norms, `D`) and the position embeddings and cls
  token; everything else decays.
- The loss is a per-batch mean: the Trainer divides it by the gradient accumulation steps.
"""

import os
import shutil
import tempfile

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from transformers.utils import logging


logger = logging.get_logger(__name__)

RECIPE_STATE_NAME = "recipe_state_{rank}.pt"
NO_DECAY_NAMES = ("position_embeddings", "temporal_position_embeddings", "cls_token")


def move_into(staging: str, output_dir: str) -> None:
    """Move every entry of `staging` into `output_dir` (each by one atomic rename), replacing what is there."""
    for name in os.listdir(staging):
        target = os.path.join(output_dir, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging, name), target)


class RecipeTrainerMixin:
    """Mixed into `transformers.Trainer` subclasses (first in the bases). Subclasses list their random streams in
    `recipe_state_attributes` and call `_setup_recipe()` at the end of `__init__`."""

    recipe_state_attributes: tuple = ()

    def _setup_recipe(self):
        self._metric_sums = {}
        self._metric_counts = 0
        # Our losses are per-batch means: let the Trainer divide them by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        if getattr(self, "is_fsdp_enabled", False):
            state_dict_type = str(getattr(self.accelerator.state.fsdp_plugin, "state_dict_type", ""))
            if "FULL_STATE_DICT" not in state_dict_type:
                logger.warning(
                    f"FSDP state_dict_type is {state_dict_type}: the checkpoints work, but the final save_model() "
                    "needs fsdp_state_dict_type=FULL_STATE_DICT."
                )
        if self.args.world_size > 1:
            for stream in self._recipe_streams().values():
                stream.manual_seed(stream.seed + self.args.process_index)

    def _recipe_streams(self) -> dict:
        streams = {}
        for name in self.recipe_state_attributes:
            stream = getattr(self, name, None)
            if stream is not None:
                streams[name] = stream
        return streams

    # --- loss components in the logs ----------------------------------------------------------------------------
    def _record_metrics(self, **values):
        """Accumulate detached scalar tensors (training only) for the next log line."""
        for name, value in values.items():
            value = value.detach().float()
            self._metric_sums[name] = self._metric_sums.get(name, 0) + value
        self._metric_counts += 1

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._metric_counts:
            names = sorted(self._metric_sums)
            means = torch.stack([self._metric_sums[n] for n in names]) / self._metric_counts
            means = self.accelerator.reduce(means.to(self.args.device), reduction="mean")
            for name, value in zip(names, means.tolist()):
                logs[name] = round(value, 6)
            self._metric_sums, self._metric_counts = {}, 0
        super().log(logs, *args, **kwargs)

    # --- optimiser -----------------------------------------------------------------------------------------------
    def get_decay_parameter_names(self, model) -> list[str]:
        """The official rule: biases, 1-D parameters, position embeddings and the cls token are not decayed."""
        names = []
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if param.ndim <= 1 or leaf == "bias" or leaf in NO_DECAY_NAMES:
                continue
            names.append(name)
        return names

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def _save_recipe_state(self, checkpoint_dir: str) -> None:
        streams = self._recipe_streams()
        if not streams:
            return
        os.makedirs(checkpoint_dir, exist_ok=True)
        state = {name: stream.state_dict() for name, stream in streams.items()}
        path = os.path.join(checkpoint_dir, RECIPE_STATE_NAME.format(rank=self.args.process_index))
        torch.save(state, path)

    def _load_recipe_state(self, checkpoint_dir: str) -> None:
        streams = self._recipe_streams()
        if not streams:
            return
        path = os.path.join(checkpoint_dir, RECIPE_STATE_NAME.format(rank=self.args.process_index))
        if not os.path.isfile(path):
            logger.warning(
                f"{path} is missing (a checkpoint of another number of processes, or an older one): the masks and "
                "mixup draws continue from fresh seeds, not from where the checkpoint left off."
            )
            return
        state = torch.load(path, weights_only=True)
        for name, stream in streams.items():
            if name in state:
                stream.load_state_dict(state[name])

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` into a staging folder, plus the recipe streams' state, then one rename."""
        if not hasattr(self, "_get_output_dir"):  # a transformers without the hook: save in place
            super()._save_checkpoint(model, trial)
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self._save_recipe_state(os.path.join(self.args.output_dir, name))
            return
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final_dir = os.path.join(run_dir, name)
        staging_root = os.path.join(run_dir, f".staging-{name}")
        if self.args.should_save and os.path.isdir(staging_root):
            shutil.rmtree(staging_root)  # left over from an interrupted save
        self.accelerator.wait_for_everyone()

        self._get_output_dir = lambda trial=None: staging_root  # noqa: E731 (the Trainer writes here)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        self._save_recipe_state(os.path.join(staging_root, name))
        self.accelerator.wait_for_everyone()

        best = self.state.best_model_checkpoint
        if best is not None and best.startswith(staging_root):
            self.state.best_model_checkpoint = os.path.join(run_dir, os.path.relpath(best, staging_root))
        if self.args.should_save:
            if best is not None and best != self.state.best_model_checkpoint:
                self.state.save_to_json(os.path.join(staging_root, name, "trainer_state.json"))
            if os.path.isdir(final_dir):
                shutil.rmtree(final_dir)
            os.replace(os.path.join(staging_root, name), final_dir)
            shutil.rmtree(staging_root, ignore_errors=True)
            self._rotate_after_save(run_dir)
        self.accelerator.wait_for_everyone()

    def _rotate_after_save(self, run_dir: str) -> None:
        limit = self.args.save_total_limit
        if limit is None or limit <= 0:
            return
        try:
            from transformers.trainer_utils import rotate_checkpoints
        except ImportError:
            rotate_checkpoints = None
        if rotate_checkpoints is not None:
            rotate_checkpoints(
                output_dir=run_dir, save_total_limit=limit,
                best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False,
            )
        elif hasattr(self, "_rotate_checkpoints"):
            self._rotate_checkpoints(use_mtime=False, output_dir=run_dir)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`Trainer.train`; on resuming, the recipe streams (masks, mixup) continue from the checkpoint's state."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({self.args.output_dir}).")
        if isinstance(resume_from_checkpoint, (str, os.PathLike)):
            self._load_recipe_state(str(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_final_model(self, output_dir: str | None, write) -> None:
        """Write the final model with `write(folder, state_dict)` into a staging folder, then move each file into
        `output_dir` (with the processing class and the training arguments, as `Trainer.save_model` does)."""
        output_dir = self.args.output_dir if output_dir is None else output_dir
        state_dict = None
        if getattr(self, "is_fsdp_enabled", False):
            state_dict_type = str(getattr(self.accelerator.state.fsdp_plugin, "state_dict_type", ""))
            if "FULL_STATE_DICT" not in state_dict_type:
                raise ValueError(
                    f"The final model is written as one folder, which needs the full state dict, but FSDP is set to "
                    f"{state_dict_type}: set fsdp_state_dict_type=FULL_STATE_DICT in the accelerate config (the "
                    "checkpoint-* folders hold the sharded state either way)."
                )
        if getattr(self, "is_fsdp_enabled", False) or getattr(self, "is_deepspeed_enabled", False):
            state_dict = self.accelerator.get_state_dict(self.model)  # collective: every rank takes part
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".staging-final-", dir=output_dir)
            try:
                write(staging, state_dict)
                if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
                    self.processing_class.save_pretrained(staging)
                torch.save(self.args, os.path.join(staging, "training_args.bin"))
                move_into(staging, output_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()


__all__ = ["RecipeTrainerMixin", "RECIPE_STATE_NAME"]
