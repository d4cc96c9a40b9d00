-- Quotas every server process sees, and a paged /history. Idempotent.

-- Server-wide values the functions below read (written by the server at startup).
create table if not exists public.jelly_settings (
    name text primary key,
    value text not null
);
alter table public.jelly_settings enable row level security;

create index if not exists runs_user_active_idx
    on public.runs (user_id) where status in ('pending', 'running');

-- MAX_ACTIVE_RUNS_PER_USER (0: no cap).
create or replace function public.jelly_set_run_cap(p_max_active integer)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.jelly_settings (name, value)
    values ('max_active_runs_per_user', greatest(p_max_active, 0)::text)
    on conflict (name) do update set value = excluded.value
    returning jsonb_build_object('max_active_runs_per_user', value::integer)
$$;

-- Every new run, whichever function creates it: refused (JL429, the cap in the
-- detail) when its user already has the cap's number of active runs. Runs asked
-- to stop do not count (they are ending). One user's inserts take turns on an
-- advisory lock, so concurrent turns cannot all slip under the cap.
create or replace function public.jelly_runs_cap()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_cap integer;
    v_active integer;
begin
    select s.value::integer into v_cap from public.jelly_settings s
    where s.name = 'max_active_runs_per_user';
    if v_cap is null or v_cap <= 0 then
        return new;
    end if;
    perform pg_advisory_xact_lock(hashtextextended('jelly.runs.' || new.user_id::text, 0));
    select count(*) into v_active from public.runs r
    where r.user_id = new.user_id and r.status in ('pending', 'running')
      and not r.stop_requested;
    if v_active >= v_cap then
        raise exception 'too many turns running' using errcode = 'JL429',
            detail = v_cap::text;
    end if;
    return new;
end;
$$;

drop trigger if exists runs_cap on public.runs;
create trigger runs_cap before insert on public.runs
    for each row execute function public.jelly_runs_cap();

-- The newest p_limit messages of the token's default conversation with an id below
-- p_before (null: the newest), oldest first; `more` when older ones exist. Null
-- for an unknown token: reading creates nothing.
create or replace function public.jelly_history(
    p_token text, p_limit integer default 200, p_before bigint default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'user_id', c.user_id,
        'conversation_id', c.id,
        'messages', coalesce((
            select jsonb_agg(jsonb_build_object(
                'id', t.id, 'type', t.type, 'content', t.content, 'created', t.created_at,
                'application', t.application
            ) order by t.id)
            from (select m.id, m.type, m.content, m.created_at, m.application
                  from public.chat_messages m
                  where m.conversation_id = c.id and (p_before is null or m.id < p_before)
                  order by m.id desc limit greatest(p_limit, 0)) t), '[]'::jsonb),
        'more', (select count(*) > greatest(p_limit, 0) from (
                     select 1 from public.chat_messages m
                     where m.conversation_id = c.id and (p_before is null or m.id < p_before)
                     limit greatest(p_limit, 0) + 1) n))
    from public.conversations c join public.users u on u.id = c.user_id
    where u.token = p_token and c.is_default
$$;

-- Only the server may call these functions (see the rpc migration).
select public.jelly_server_only(array[
        'public.jelly_set_run_cap(integer)',
        'public.jelly_runs_cap()',
        'public.jelly_history(text, integer, bigint)'
    ]);

notify pgrst, 'reload schema';
