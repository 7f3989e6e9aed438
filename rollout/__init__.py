"""genesis-rollout: progressive delivery of Genesis SPICE + Pipelex as code.

Top level: `model` (the one pydantic stage/gate model), `config` (Pulumi.yaml + stage files into
the model), `numbers` (the one number format people read: `0.1 %`, `773 ms`), `cli` (the
`rollout` command). The rest lives in subpackages by concern; the
allowed import directions are pinned by tests/test_layout.py:

    analysis    pure judging: signals, gates, decision            imports model only
    monitoring  generators: alert rules, Alertmanager, dashboard  imports analysis, model
    release     the bot and its adapters (Prometheus, Pulumi, ...) imports analysis, monitoring
    review      offline evaluation: render, plan, mock runtime    imports anything but local
    local       stand-ins for a cluster: demo, synthetic, deployer imported by cli and tests only
"""
