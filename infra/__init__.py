"""The CDK app's constructs and stacks. Imports no runtime code but `runtime.common` names."""
