"""govflow: BPMN workflow orchestration for government IT project lifecycles."""
