"""An independent float64 re-computation of the official VideoMamba forward pass, from its equations.

It reads parameters from a state dict and uses plain tensor arithmetic with a sequential scan; it never calls the
package's modules. Key names are ours (see `official_to_ours` in the conversion tests for the official names).
"""

import torch
import torch.nn.functional as F


def reference_scan(x, z, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A_log, D, state_size):
    """One direction, token-major float64. x, z: (batch, length, inner) in scan order."""
    batch, length, inner = x.shape
    kernel = conv_w.shape[-1]
    padded = torch.cat([x.new_zeros(batch, kernel - 1, inner), x], dim=1)
    conv = sum(padded[:, k : k + length] * conv_w[:, 0, k] for k in range(kernel))
    if conv_b is not None:
        conv = conv + conv_b
    xc = conv * torch.sigmoid(conv)
    x_dbl = xc @ x_proj_w.T
    rank = dt_proj_w.shape[1]
    dt_low, B, C = x_dbl[..., :rank], x_dbl[..., rank : rank + state_size], x_dbl[..., rank + state_size :]
    delta = F.softplus(dt_low @ dt_proj_w.T + dt_proj_b)
    A = -torch.exp(A_log)
    h = x.new_zeros(batch, inner, state_size)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * xc[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) + D * xc
    return y * (z * torch.sigmoid(z))


def reference_mixer(hidden, p, prefix, state_size):
    xz = hidden @ p[prefix + "in_proj.weight"].T
    x, z = xz.chunk(2, dim=-1)

    def direction(suffix, xs, zs):
        return reference_scan(
            xs, zs, p[f"{prefix}conv1d{suffix}.weight"], p.get(f"{prefix}conv1d{suffix}.bias"),
            p[f"{prefix}x_proj{suffix}.weight"], p[f"{prefix}dt_proj{suffix}.weight"],
            p[f"{prefix}dt_proj{suffix}.bias"], p[f"{prefix}A{'_b' if suffix else ''}_log"],
            p[f"{prefix}D{suffix}"], state_size,
        )

    y = direction("", x, z) + direction("_b", x.flip(1), z.flip(1)).flip(1)
    return y @ p[prefix + "out_proj.weight"].T


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def reference_forward(state_dict, config, pixel_values):
    """Float64 logits (or cls features if no classifier) of `(batch, frames, channels, height, width)` input."""
    p = {k: v.double() for k, v in state_dict.items()}
    pre = "videomamba." if any(k.startswith("videomamba.") for k in p) else ""
    video = pixel_values.double()
    batch, frames = video.shape[:2]
    w = p[pre + "embeddings.patch_embeddings.projection.weight"]  # (hidden, C, 1, P, P)
    patch = config.patch_size
    # (b, t, c, H, W) -> (b, t, gh, gw, c*P*P) in the conv weight's (c, kh, kw) order
    gh, gw = video.shape[3] // patch, video.shape[4] // patch
    cells = video.reshape(batch, frames, video.shape[2], gh, patch, gw, patch).permute(0, 1, 3, 5, 2, 4, 6)
    cells = cells.reshape(batch, frames, gh * gw, -1)
    tokens = cells @ w.reshape(w.shape[0], -1).T + p[pre + "embeddings.patch_embeddings.projection.bias"]
    pos = p[pre + "embeddings.position_embeddings"][0]
    tokens = tokens + pos[1:]
    temporal_key = pre + "embeddings.temporal_position_embeddings"
    if temporal_key in p:
        tokens = tokens + p[temporal_key][0][:, None, :]
    cls = (p[pre + "embeddings.cls_token"][0, 0] + pos[0]).expand(batch, 1, -1)
    hidden = torch.cat([cls, tokens.reshape(batch, frames * gh * gw, -1)], dim=1)

    residual = None
    for i in range(config.num_hidden_layers):
        residual = hidden if residual is None else residual + hidden
        normed = rms_norm(residual, p[f"{pre}layers.{i}.norm.weight"], config.norm_eps)
        hidden = reference_mixer(normed, p, f"{pre}layers.{i}.mixer.", config.state_size)
    final = rms_norm(residual + hidden, p[pre + "norm_f.weight"], config.norm_eps)
    cls_feature = final[:, 0]
    if "classifier.weight" in p:
        return cls_feature @ p["classifier.weight"].T + p["classifier.bias"]
    return cls_feature
