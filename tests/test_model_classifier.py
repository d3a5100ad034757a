"""fC as the paper cites it (FrameExit, AdaFocusV2): Linear -> BN -> ReLU per feature before the
accumulated max-pooling, for the glance and every cube; the older form (no embedding) as an option;
the cost model charges the embedding; inference and the training forward agree."""
import pytest
import torch
from torch import nn

from adafocus.inference import EarlyExitRunner, component_gmacs
from adafocus.model import AdaFocusV3, ModelConfig
from adafocus.model.classifier import ExitClassifier, FeatureEmbedding


def tiny(embed_width: int) -> AdaFocusV3:
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", num_cubes=3, policy_channels=8, embed_width=embed_width,
                                local=dict(tiny_channels=(8, 16, 16)))
    return AdaFocusV3(config)


def test_features_are_embedded_then_max_pooled_over_the_cubes_seen():
    torch.manual_seed(0)
    fc = ExitClassifier(glance_channels=5, local_channels=6, num_cubes=3, num_classes=4, embed_width=7).eval()
    for norm in (fc.glance_embedding.norm, fc.local_embedding.norm):  # non-trivial running statistics
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    glance, local = torch.randn(2, 5), torch.randn(2, 3, 6)

    def embed(module: FeatureEmbedding, x):
        return torch.relu(module.norm(module.linear(x)))

    z = embed(fc.glance_embedding, glance)
    h = torch.stack([embed(fc.local_embedding, local[:, k]) for k in range(3)], dim=1)
    logits = fc(glance, local)
    torch.testing.assert_close(logits[0], fc.heads[0](z))
    for t in range(1, 4):
        pooled = h[:, :t].amax(dim=1)
        torch.testing.assert_close(logits[t], fc.heads[t](torch.cat((pooled, z), dim=1)))
        torch.testing.assert_close(logits[t], fc.local_exit(t, pooled, z))  # the API inference uses
    assert fc.embed_local(local).shape == (2, 3, 7) and bool((fc.embed_local(local) >= 0).all())


def test_the_older_form_has_no_embedding_and_old_state_dicts_load():
    old = tiny(0)
    assert isinstance(old.classifier.local_embedding, nn.Identity)
    assert not [name for name in old.state_dict() if "embedding" in name]
    features = torch.randn(4, old.local.out_channels)
    assert torch.equal(old.classifier.embed_local(features), features)
    new = tiny(32)
    assert new.classifier.embed_local(features).shape == (4, 32)
    assert new.classifier.heads[1].in_features == 64


def test_the_cost_model_charges_the_embeddings():
    with torch.device("meta"):
        plain = AdaFocusV3(ModelConfig.preset("paper_tsm", embed_width=0))
        embedded = AdaFocusV3(ModelConfig.preset("paper_tsm"))
    shape = (1, 3, 24, 224, 224)
    before, after = component_gmacs(plain, shape), component_gmacs(embedded, shape)
    width, classes = embedded.config.embed_width, embedded.config.num_classes
    glance_embedding = 1280 * width / 1e9
    assert after["glance_head"] == pytest.approx(glance_embedding + width * classes / 1e9, rel=1e-3)
    # A later exit embeds its cube (2048 -> width); the glance's embedding is made once, at exit 0.
    assert after["local_head"] == pytest.approx((2048 * width + 2 * width * classes) / 1e9, rel=1e-3)
    assert after["local_head"] - before["local_head"] > 0.008


@pytest.mark.parametrize("embed_width", [0, 24])
def test_staged_inference_matches_the_classifier_forward(embed_width):
    model = tiny(embed_width)
    video = torch.randn(4, 3, 8, 48, 48)
    model(video).logits[-1].sum().backward()  # a training step moves the BN statistics
    model.eval()
    runner = EarlyExitRunner(model)
    with torch.no_grad():
        every = runner(video, return_all_exits=True).all_logits  # ExitClassifier.forward on all cubes
        staged = runner(video, exit_plan=torch.arange(4))  # video t stops at exit t: embed_local, local_exit
    assert staged.exit_index.tolist() == [0, 1, 2, 3]
    for t in range(4):
        torch.testing.assert_close(staged.logits[t], every[t, t], rtol=1e-4, atol=1e-5)


def test_inference_embeds_the_glance_once_per_video_whatever_the_exit():
    model = tiny(24).eval()
    calls = []
    model.classifier.glance_embedding.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    video = torch.randn(3, 3, 8, 48, 48)
    with torch.no_grad():
        out = EarlyExitRunner(model)(video, exit_plan=torch.tensor([3, 3, 3]))  # every exit evaluated
    assert out.exit_index.tolist() == [3, 3, 3]
    assert calls == [3]  # one batch of 3 videos, at exit 0
