"""Mean-field theory (initlab.theory) against closed forms, independent quadrature and
simulated wide deep random networks."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize
from typer.testing import CliRunner

import initlab.cli.theory  # noqa: F401  (registers the command)
from initlab import activations, theory
from initlab.cli._app import app


def gauss(f, q: float, cuts=()) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1), by adaptive quadrature split at 0, the cuts and +-1/sqrt(q)."""
    s = math.sqrt(q)
    points = sorted({-12.0, 12.0, 0.0, *(c / s for c in (*cuts, -1, 1) if abs(c / s) < 12)})
    density = lambda z: f(s * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return sum(integrate.quad(density, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
               for a, b in zip(points[:-1], points[1:], strict=True))


def gauss_2d(f, g, q: float, c: float) -> float:
    """E[f(u1) g(u2)], u1 = sqrt(q) z1, u2 = sqrt(q)(c z1 + sqrt(1-c^2) z2): 2D Gauss-Hermite."""
    x, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / math.sqrt(2 * math.pi)
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    return float((w[:, None] * w[None, :] * f(u1) * g(u2)).sum())


def sech2(x):
    return 1 / np.cosh(x) ** 2


# --- closed forms ---------------------------------------------------------------------------

def test_relu_length_map_and_fixed_point_closed_forms():
    q = torch.tensor([1e-9, 1e-3, 0.5, 3.0, 1e3, 1e5], dtype=torch.float64)
    torch.testing.assert_close(theory.length_map("relu", q, 1.7, 0.2), 1.7 * q / 2 + 0.2,
                               rtol=1e-12, atol=0)
    ordered = theory.mean_field("relu", 1.5, 0.1)  # q* = sigma_b2 / (1 - sigma_w2 / 2)
    assert ordered.q_star == pytest.approx(0.1 / (1 - 0.75), rel=1e-12)
    assert ordered.chi_1 == pytest.approx(0.75, rel=1e-12)
    assert ordered.xi_c == pytest.approx(-1 / math.log(0.75), rel=1e-10)
    assert ordered.xi_q == pytest.approx(-1 / math.log(0.75), rel=1e-10)  # slope sigma_w2 / 2
    assert (ordered.c_star, ordered.phase) == (1.0, "ordered")
    chaotic = theory.mean_field("relu", 2.5, 0.1)  # q grows by 2.5/2 per layer: no fixed point
    assert chaotic.q_star == math.inf and chaotic.phase == "chaotic"
    assert chaotic.trainable_depth == pytest.approx(6 / math.log(1.25), rel=1e-10)


def test_he_init_is_the_relu_critical_point():
    for sigma_b2 in (0.0, 0.1, 1.0):  # chi_1 = sigma_w2 / 2 whatever q* is
        assert theory.critical_sigma_w2("relu", sigma_b2) == pytest.approx(2.0, abs=1e-12)
    for q0 in (0.7, 1.0, 3.0):  # every length is a fixed point
        he = theory.mean_field("relu", 2.0, 0.0, q0=q0)
        assert he.phase == "critical" and he.q_star == pytest.approx(q0, rel=1e-12)
        assert he.c_star == 1.0 and he.xi_c == he.trainable_depth == math.inf
    alpha = 0.01  # Leaky ReLU: chi_1 = sigma_w2 (1 + alpha^2) / 2
    assert theory.critical_sigma_w2("leaky_relu") == pytest.approx(2 / (1 + alpha**2), rel=1e-10)


def test_relu_correlation_map_is_the_arc_cosine_kernel():
    # Cho & Saul 2009: E[relu(u1) relu(u2)] = q (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi).
    c = torch.tensor([-0.9, -0.3, 0.0, 0.4, 0.8, 0.95, 0.99], dtype=torch.float64)
    for q, sw2, sb2 in [(0.5, 2.0, 0.0), (3.0, 1.5, 0.3)]:
        kernel = q * (torch.sqrt(1 - c**2) + (math.pi - torch.arccos(c)) * c) / (2 * math.pi)
        expected = (sw2 * kernel + sb2) / (sw2 * q / 2 + sb2)
        # The Mehler series is cut after 64 terms (the rest lumped into one c^65 term):
        # ReLU's coefficients fall as k^-2.5, so the cut costs < 1e-4 at |c| <= 0.99.
        torch.testing.assert_close(theory.correlation_map("relu", c, q, sw2, sb2), expected,
                                   rtol=0, atol=1e-4)
        assert theory.correlation_map("relu", 1.0, q, sw2, sb2).item() == pytest.approx(1, 1e-12)


def test_identity_closed_forms():
    q = torch.tensor([0.01, 1.0, 50.0], dtype=torch.float64)
    torch.testing.assert_close(theory.length_map("identity", q, 0.8, 0.1), 0.8 * q + 0.1)
    c = torch.tensor([-0.5, 0.2, 0.9], dtype=torch.float64)
    torch.testing.assert_close(theory.correlation_map("identity", c, 2.0, 0.8, 0.1),
                               (0.8 * 2.0 * c + 0.1) / (0.8 * 2.0 + 0.1))
    mf = theory.mean_field("identity", 0.6, 0.2)
    assert mf.q_star == pytest.approx(0.2 / 0.4, rel=1e-12) and mf.chi_1 == pytest.approx(0.6)
    for sigma_b2 in (0.0, 0.3):
        assert theory.critical_sigma_w2("identity", sigma_b2) == pytest.approx(1.0, abs=1e-12)


# --- tanh and friends against independent quadrature ----------------------------------------

@pytest.mark.parametrize("name, cuts", [("tanh", ()), ("gelu", ()), ("elu", ()),
                                        ("hardtanh", (-1.0, 1.0)), ("softplus", ())])
def test_length_map_matches_adaptive_quadrature(name, cuts):
    fn = activations.get(name).fn
    phi = lambda x: fn(torch.tensor([x], dtype=torch.float64)).item()  # noqa: E731
    for q in (0.013, 0.7, 5.0, 300.0):
        expected = 1.3 * gauss(lambda x: phi(x) ** 2, q, cuts) + 0.05
        # Interpolation in log q over a table at 48 points a decade: ~1e-7.
        assert theory.length_map(name, q, 1.3, 0.05).item() == pytest.approx(expected, rel=1e-6)


def test_tanh_critical_line_rises_from_one():
    line = theory.critical_line("tanh", torch.tensor([0.0, 1e-6, 1e-4, 0.01, 0.1, 0.3, 1.0]))
    assert line[0].item() == pytest.approx(1.0, abs=1e-12)  # q* = 0: chi_1 = sigma_w2 phi'(0)^2
    assert torch.all(line[1:] > line[:-1])  # monotone increasing in sigma_b2
    assert line[1].item() < 1.05  # and continuous as sigma_b2 -> 0


def test_tanh_critical_point_against_independent_root_finding():
    # chi_1(sigma_w2) = sigma_w2 E[sech^4(sqrt(q*) z)] = 1 with q* the root of the length map.
    sigma_b2 = 0.05

    def q_star(sw2):
        return optimize.brentq(lambda q: sw2 * gauss(lambda x: math.tanh(x) ** 2, q)
                               + sigma_b2 - q, 1e-6, 50, xtol=1e-14)

    expected = optimize.brentq(lambda sw2: sw2 * gauss(lambda x: sech2(x) ** 2, q_star(sw2)) - 1,
                               1.01, 4.0, xtol=1e-12)
    assert theory.critical_sigma_w2("tanh", sigma_b2) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.76, abs=0.01)


def test_depth_scales_are_schoenholz_expressions():
    # xi_q = -1/log(chi_1 + sigma_w2 E[phi'' phi]) (their eq. 6), with phi'' = -2 tanh sech^2;
    # the library uses the Stein form sigma_w2 d/dq E[phi^2] instead: same number.
    sw2, sb2 = 1.5, 0.1
    mf = theory.mean_field("tanh", sw2, sb2)
    q = mf.q_star
    assert sw2 * gauss(lambda x: math.tanh(x) ** 2, q) + sb2 == pytest.approx(q, rel=1e-7)
    chi_1 = sw2 * gauss(lambda x: sech2(x) ** 2, q)
    curvature = sw2 * gauss(lambda x: -2 * math.tanh(x) ** 2 * sech2(x), q)
    assert mf.chi_1 == pytest.approx(chi_1, rel=1e-6)
    assert mf.xi_q == pytest.approx(-1 / math.log(chi_1 + curvature), rel=1e-5)
    assert mf.xi_c == pytest.approx(-1 / math.log(chi_1), rel=1e-5)  # ordered: c* = 1


def test_chaotic_fixed_point_against_2d_quadrature():
    sw2, sb2 = 2.5, 0.05
    mf = theory.mean_field("tanh", sw2, sb2)
    q, c = mf.q_star, mf.c_star
    assert mf.phase == "chaotic" and 0.2 < c < 0.9
    mapped = (sw2 * gauss_2d(np.tanh, np.tanh, q, c) + sb2) / q  # the direct 2D integral
    assert mapped == pytest.approx(c, abs=1e-7)
    chi_c = sw2 * gauss_2d(sech2, sech2, q, c)  # sigma_w2 E[phi'(u1) phi'(u2)] at (q*, c*)
    assert mf.chi_c == pytest.approx(chi_c, rel=1e-6)
    assert mf.xi_c == pytest.approx(-1 / math.log(chi_c), rel=1e-5)
    cs = torch.tensor([-0.6, 0.0, 0.5, 0.9], dtype=torch.float64)
    direct = [(sw2 * gauss_2d(np.tanh, np.tanh, q, x) + sb2) / q for x in cs.tolist()]
    torch.testing.assert_close(theory.correlation_map("tanh", cs, q, sw2, sb2),
                               torch.tensor(direct, dtype=torch.float64), rtol=0, atol=1e-7)


def test_odd_activation_without_bias_decorrelates_fully():
    # sigma_b2 = 0 and an odd phi: E[phi(u1) phi(u2)] is odd in c, so c* = 0 in the chaotic phase.
    mf = theory.mean_field("tanh", 3.0, 0.0)
    assert mf.phase == "chaotic" and mf.c_star == pytest.approx(0.0, abs=1e-12)


def test_a_plain_callable_is_the_same_activation():
    assert theory.critical_sigma_w2(torch.tanh, 0.2) == pytest.approx(
        theory.critical_sigma_w2("tanh", 0.2), rel=1e-9)
    assert theory.mean_field(torch.nn.ReLU(), 1.5, 0.1).q_star == pytest.approx(0.4, rel=1e-12)


# --- simulation -----------------------------------------------------------------------------

WIDTH, DEPTH = 1024, 50
CASES = [("tanh", 1.3, 0.3), ("tanh", 4.0, 0.05), ("relu", 1.0, 0.5)]  # ordered, chaotic, ordered


@pytest.fixture(scope="module")
def simulated():
    """Per layer q_l (mean of both inputs) and c_l of two inputs through one random net per case.

    Weights N(0, sigma_w2 / WIDTH), biases N(0, sigma_b2), inputs of length q = 1 and
    correlation 0.2; the cases share each layer's standard-normal draw (one seeded generator).
    """
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(WIDTH, 2, generator=generator, dtype=torch.float64))
    x = (torch.stack([basis[:, 0], 0.2 * basis[:, 0] + math.sqrt(1 - 0.04) * basis[:, 1]])
         * math.sqrt(WIDTH)).float()
    acts = [activations.get(name).fn for name, _, _ in CASES]
    h = [x] * len(CASES)
    q, c = torch.zeros(len(CASES), DEPTH), torch.zeros(len(CASES), DEPTH)
    for layer in range(DEPTH):
        weight = torch.randn(WIDTH, WIDTH, generator=generator) / math.sqrt(WIDTH)
        bias = torch.randn(WIDTH, generator=generator)
        for i, (_, sw2, sb2) in enumerate(CASES):
            inputs = h[i] if layer == 0 else acts[i](h[i])
            h[i] = math.sqrt(sw2) * inputs @ weight.T + math.sqrt(sb2) * bias
            q[i, layer] = h[i].pow(2).mean()
            c[i, layer] = torch.nn.functional.cosine_similarity(h[i][0], h[i][1], dim=0)
    return q.double(), c.double().clamp(-1, 1)  # float32 rounding can pass 1 by an ulp


def theory_trajectory(name, sw2, sb2):
    q, c = sw2 * 1.0 + sb2, (sw2 * 0.2 + sb2) / (sw2 + sb2)  # first layer: linear in x
    qs, cs = [], []
    for _ in range(DEPTH):
        qs.append(q)
        cs.append(c)
        q, c = (theory.length_map(name, q, sw2, sb2).item(),
                theory.correlation_map(name, c, q, sw2, sb2).item())
    return torch.tensor(qs, dtype=torch.float64), torch.tensor(cs, dtype=torch.float64)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_wide_deep_networks_follow_the_maps(simulated, case):
    name, sw2, sb2 = CASES[case]
    mf = theory.mean_field(name, sw2, sb2)
    q_sim, c_sim = simulated[0][case], simulated[1][case]
    q_th, c_th = theory_trajectory(name, sw2, sb2)
    # Finite width: a layer's q is a mean over WIDTH units of h^2 (h ~ N(0, q)), so it is off
    # by a relative sqrt(2 / WIDTH) (4.4% here); a sample correlation by (1 - c^2)/sqrt(WIDTH).
    # Deviations carry into the next layer scaled by the map's slope a (a = exp(-1/xi)), an
    # AR(1) process with stationary spread sigma / sqrt(1 - a^2). Bound: 5 of those.
    a_q, a_c = math.exp(-1 / mf.xi_q), mf.chi_c
    spread_q = math.sqrt(2 / WIDTH) / math.sqrt(1 - a_q**2)
    assert (q_sim / q_th - 1).abs().max() < 5 * spread_q
    spread_c = (1 - c_th**2).clamp(min=1 / WIDTH) / math.sqrt(WIDTH) / math.sqrt(1 - a_c**2)
    assert ((c_sim - c_th).abs() < 5 * spread_c + 1e-3).all()
    # One step of each map from the measured state: fresh noise only, independent per layer,
    # so the mean of the n residuals (in units of their spread) has spread 1/sqrt(n). A 3% bias
    # in the length map fails the first bound; the second uses the layers whose correlation
    # is not yet pinned at 1 (1 - c^2 > 0.05).
    q_step = theory.length_map(name, q_sim[:-1], sw2, sb2)
    assert (q_sim[1:] / q_step - 1).mean().abs() < 4 * math.sqrt(2 / WIDTH) / math.sqrt(DEPTH - 1)
    c_step = theory.correlation_map(name, c_sim[:-1], q_sim[:-1], sw2, sb2)
    spread = (1 - c_sim[:-1] ** 2) / math.sqrt(WIDTH)
    informative = spread > 0.05 / math.sqrt(WIDTH)
    residuals = ((c_sim[1:] - c_step) / spread)[informative]
    assert residuals.mean().abs() < 4 / math.sqrt(len(residuals))
    # The fixed points themselves: the trajectories end there.
    assert q_th[-1].item() == pytest.approx(mf.q_star, rel=1e-6)
    assert c_th[-1].item() == pytest.approx(mf.c_star, abs=1e-4)


# --- grids, figure, CLI ---------------------------------------------------------------------

def test_phase_diagram_matches_pointwise_solutions():
    sw2 = torch.tensor([0.5, 1.2, 1.9, 2.6, 4.0], dtype=torch.float64)
    sb2 = torch.tensor([0.0, 0.05, 0.3], dtype=torch.float64)
    diagram = theory.phase_diagram("tanh", sw2, sb2)
    assert diagram.chi_1.shape == (3, 5)
    for i, b in enumerate(sb2.tolist()):
        for j, w in enumerate(sw2.tolist()):
            point = theory.mean_field("tanh", w, b)
            assert diagram.q_star[i, j].item() == pytest.approx(point.q_star, rel=1e-9, abs=1e-12)
            assert diagram.c_star[i, j].item() == pytest.approx(point.c_star, abs=1e-9)
            assert diagram.xi_c[i, j].item() == pytest.approx(point.xi_c, rel=1e-6)
            assert ["ordered", "critical", "chaotic"][diagram.phase[i, j] + 1] == point.phase
    assert torch.equal(diagram.phase, torch.sign(diagram.chi_1 - 1).to(torch.int8))


def test_phase_diagram_boundary_is_the_critical_line(tmp_path):
    sw2 = torch.linspace(0.5, 4.0, 100, dtype=torch.float64)
    sb2 = torch.linspace(0.0, 0.5, 100, dtype=torch.float64)
    diagram = theory.phase_diagram("tanh", sw2, sb2)
    rows = slice(None, None, 11)
    first_chaotic = sw2[(diagram.phase[rows] > 0).int().argmax(1)]
    line = theory.critical_line("tanh", sb2[rows])
    step = (sw2[1] - sw2[0]).item()
    assert ((first_chaotic - line) >= 0).all() and ((first_chaotic - line) <= step + 1e-12).all()
    figure = diagram.plot(tmp_path / "tanh.png", mark=(2.0, 0.05))
    assert (tmp_path / "tanh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes[0].collections) >= 3  # regions, xi_c contours, critical line


def test_cli_reports_the_critical_point_and_writes_the_figure(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["theory", "tanh", "--sigma-b2", "0.05"])
    assert result.exit_code == 0, result.output
    assert "1.76095" in result.output and "critical" in result.output
    png = tmp_path / "relu.png"
    result = runner.invoke(app, ["theory", "relu", "--sigma-w2", "1.5", "--sigma-b2", "0.1",
                                 "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "ordered" in result.output and "0.4 " in result.output  # q* = 0.1 / (1 - 0.75)
    assert png.stat().st_size > 10_000


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, bad", [({"sigma_w2": -1.0}, "sigma_w2"),
                                         ({"sigma_b2": -0.1}, "sigma_b2"),
                                         ({"sigma_w2": math.nan}, "sigma_w2")])
def test_negative_or_missing_variances_are_refused(kwargs, bad):
    args = {"sigma_w2": 1.0, "sigma_b2": 0.0} | kwargs
    with pytest.raises(ValueError, match=bad):
        theory.mean_field("tanh", **args)
    with pytest.raises(ValueError, match=bad):
        theory.phase_diagram("tanh", [args["sigma_w2"]], [args["sigma_b2"]])


def test_an_input_length_must_be_positive():
    with pytest.raises(ValueError, match="q0 must be a finite input length > 0, got 0.0"):
        theory.mean_field("tanh", 1.0, q0=0.0)
    with pytest.raises(ValueError, match="q must be a finite variance >= 0"):
        theory.length_map("tanh", -1.0, 1.0)


def test_an_activation_with_non_finite_values_is_refused():
    def exploding(x):
        return torch.exp(x * x)  # inf beyond |x| = 26.6

    with pytest.raises(ValueError, match="'exploding'.*inf at x = "):
        theory.mean_field(exploding, 1.0)
    with pytest.raises(ValueError, match="'log'.*nan at x = -"):
        theory.critical_sigma_w2(torch.log)
    with pytest.raises(ValueError, match="valid"):
        theory.critical_sigma_w2("tanhh")


def test_no_edge_of_chaos_is_an_error_not_a_number():
    with pytest.raises(ValueError, match="gelu.*no edge of chaos.*jumps"):
        theory.critical_sigma_w2("gelu", 0.0)  # q* = 0 attractor gives way to a diverging length
    assert math.isnan(theory.critical_line("gelu", [0.0]).item())
    with pytest.raises(ValueError, match=r"correlation must lie in \[-1, 1\]"):
        theory.correlation_map("tanh", 1.5, 1.0, 1.0)
