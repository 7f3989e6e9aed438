"""Stage fixtures for the pure analysis tests."""

# every flag of a live stage: SPICE and Pipelex on, fallback off
FLAGS_ON = {
    "spice-task-generation": True, "spice-self-play": True, "spice-challenger-agent": True,
    "spice-reasoner-agent": True, "spice-se-darwin-integration": True, "spice-task-cache": False,
    "pipelex-workflows": True, "pipelex-runtime": True, "pipelex-workflow-templates": True,
    "pipelex-parallel-steps": False, "pipelex-htdag-fallback": True, "fallback-mode": False,
    "spice-pipelex-metrics": True, "spice-pipelex-tracing": True, "track-request-tagging": True,
}
