"""Code that runs in AWS (API Lambdas, GPU worker) and locally; infra/ deploys it."""
