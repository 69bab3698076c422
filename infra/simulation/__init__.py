"""A deterministic control-plane simulation of the synthesized stack (docs/simulation.md).

It reads the CloudFormation template the CDK app synthesizes, so it replays the alarms, scaling
policies, capacity providers and queues that would be deployed, never a copy of them.
"""
