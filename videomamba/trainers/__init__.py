# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Training recipes (transformers `Trainer` subclasses) for VideoMamba."""
