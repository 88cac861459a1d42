#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {}
pub fn command(_a: &ReproduceArgs) -> anyhow::Result<()> { anyhow::bail!("not yet") }
