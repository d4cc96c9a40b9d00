-- Models, per-user access, usage with cost, and budgets that cannot be overspent
-- (issue 28). Idempotent. Both backends call these functions.
--
-- Amounts are USD, exact (numeric): model prices per million tokens, balances,
-- costs. A user's `spent_usd` counts the cost of the current budget period
-- (`spent_since` is that period's start; another start means nothing was spent
-- yet in the new period). Active runs of a user with a balance hold a
-- reservation (`runs.reserved_usd`) that ends with the run, when its real cost
-- is added to `spent_usd` in the same transaction as its usage rows.

create table if not exists public.models (
    id text primary key,                -- what the provider is called with
    name text not null,
    provider text not null default 'openai',
    input_price numeric not null default 0 check (input_price >= 0),   -- USD / 1M tokens
    output_price numeric not null default 0 check (output_price >= 0), -- USD / 1M tokens
    context_window integer check (context_window is null or context_window > 0),
    enabled boolean not null default true,
    is_default boolean not null default false,
    created_at timestamptz not null default clock_timestamp(),
    updated_at timestamptz not null default clock_timestamp()
);
alter table public.models enable row level security;

alter table public.users add column if not exists models text[];          -- null: every enabled model
alter table public.users add column if not exists balance_usd numeric;    -- null: unlimited
alter table public.users add column if not exists budget_period text;     -- null: all time, or 'month'
alter table public.users add column if not exists spent_usd numeric not null default 0;
alter table public.users add column if not exists spent_since timestamptz not null default '-infinity';
alter table public.users add column if not exists last_run_usd numeric;   -- the next run's estimate
alter table public.conversations add column if not exists model text;     -- its default model
alter table public.runs add column if not exists reserved_usd numeric;

create table if not exists public.usage (
    id bigint generated always as identity primary key,
    user_id bigint not null references public.users (id) on delete cascade,
    run_id uuid references public.runs (id) on delete set null,
    application text,
    model text not null,
    kind text not null default 'answer',   -- answer, title, summary, suggestion
    input_tokens integer not null default 0,
    output_tokens integer not null default 0,
    cost_usd numeric not null default 0,
    estimated boolean not null default false,  -- a stream cut short without a usage chunk
    created_at timestamptz not null default clock_timestamp()
);
create index if not exists usage_user_created_idx on public.usage (user_id, created_at);
create index if not exists usage_created_idx on public.usage (created_at);
create index if not exists usage_run_idx on public.usage (run_id);
alter table public.usage enable row level security;

-- ---------------------------------------------------------------- helpers

-- The start of the budget period holding now (UTC months); -infinity for all time.
create or replace function public.jelly_period_start(p_period text)
returns timestamptz
language sql
stable
set search_path = ''
as $$
    select case when p_period = 'month'
                then date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
                else '-infinity'::timestamptz end
$$;

-- What a user spent in the current period, from the counter.
create or replace function public.jelly_spent(p_user public.users)
returns numeric
language sql
stable
set search_path = ''
as $$
    select case when p_user.spent_since = public.jelly_period_start(p_user.budget_period)
                then p_user.spent_usd else 0 end
$$;

-- The cost of tokens of a model at its price now (0 for a model not in the registry).
create or replace function public.jelly_cost(p_model text, p_input integer, p_output integer)
returns numeric
language sql
stable
set search_path = ''
as $$
    select coalesce((select (greatest(coalesce(p_input, 0), 0) * m.input_price
                             + greatest(coalesce(p_output, 0), 0) * m.output_price) / 1000000
                     from public.models m where m.id = p_model), 0)
$$;

create or replace function public.jelly_model_json(p_model public.models)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'id', p_model.id, 'name', p_model.name, 'provider', p_model.provider,
        'input_price', p_model.input_price, 'output_price', p_model.output_price,
        'context_window', p_model.context_window, 'enabled', p_model.enabled,
        'default', p_model.is_default)
$$;

-- Usage rows of model calls, priced now; adds their cost to the user's spending.
-- p_usage: [{kind, model?, input_tokens, output_tokens, estimated?}].
-- Returns the totals {input_tokens, output_tokens, cost_usd}.
create or replace function public.jelly_insert_usage(
    p_user_id bigint, p_run_id uuid, p_application text, p_model text, p_usage jsonb,
    p_is_run boolean default false
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_totals jsonb;
    v_cost numeric;
    v_start timestamptz;
begin
    with added as (
        insert into public.usage (user_id, run_id, application, model, kind, input_tokens,
                                  output_tokens, cost_usd, estimated)
        select p_user_id, p_run_id, p_application, e.model, e.kind, e.input, e.output,
               public.jelly_cost(e.model, e.input, e.output), e.estimated
        from (select coalesce(nullif(u ->> 'model', ''), p_model, 'unknown') as model,
                     coalesce(nullif(u ->> 'kind', ''), 'answer') as kind,
                     greatest(coalesce((u ->> 'input_tokens')::integer, 0), 0) as input,
                     greatest(coalesce((u ->> 'output_tokens')::integer, 0), 0) as output,
                     coalesce((u ->> 'estimated')::boolean, false) as estimated
              from jsonb_array_elements(coalesce(p_usage, '[]'::jsonb)) u) e
        returning input_tokens, output_tokens, cost_usd
    )
    select jsonb_build_object('input_tokens', coalesce(sum(input_tokens), 0),
                              'output_tokens', coalesce(sum(output_tokens), 0),
                              'cost_usd', coalesce(sum(cost_usd), 0))
    into v_totals from added;
    v_cost := (v_totals ->> 'cost_usd')::numeric;
    if v_cost > 0 or p_is_run then
        update public.users u set
            spent_usd = case when u.spent_since = public.jelly_period_start(u.budget_period)
                             then u.spent_usd + v_cost else v_cost end,
            spent_since = public.jelly_period_start(u.budget_period),
            last_run_usd = case when p_is_run then v_cost else u.last_run_usd end
        where u.id = p_user_id;
    end if;
    return v_totals;
end;
$$;

-- ---------------------------------------------------------------- runs

-- jelly_start_run with the model's access check, the budget check and the
-- reservation, in the same single call (no extra round trip before the first token).
-- p_model: the model the message asked for (null: the conversation's, else the
-- assistant's that answers (p_assistant_id or the usual choice), else the default,
-- p_default_model when the user may use it). Refuses with JL403
-- (detail 'model') a model that is unknown, disabled or not the user's, and with
-- JL402 (detail: the period) a user whose remaining balance is zero or less,
-- before anything is stored. A user with a balance is locked for the call, so
-- that concurrent runs (any process) reserve one after the other: the reservation
-- is the user's last run's cost, at least p_estimate_* tokens at the model's price.
create or replace function public.jelly_start_metered_run(
    p_token text,
    p_greeting text,
    p_conversation_id uuid default null,
    p_application text default null,
    p_multitask text default 'enqueue',
    p_owner text default null,
    p_model text default null,
    p_message text default null,
    p_memory integer default 10,
    p_timeout double precision default 120,
    p_default_model text default null,
    p_estimate_input integer default 0,
    p_estimate_output integer default 0,
    p_assistant_id text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_user public.users;
    v_assistant public.assistants;
    v_model public.models;
    v_wanted text := p_model;
    v_estimate numeric;
    v_ticket jsonb;
begin
    select * into v_user from public.users u where u.token = p_token;
    if v_user.id is not null and v_user.balance_usd is not null then
        select * into v_user from public.users u where u.id = v_user.id for update;
    end if;
    if v_wanted is null and p_conversation_id is not null and v_user.id is not null then
        select c.model into v_wanted from public.conversations c
        where c.id = p_conversation_id and c.user_id = v_user.id;
    end if;
    if v_wanted is null then
        v_assistant := public.jelly_choose_assistant(p_assistant_id, p_token, p_conversation_id,
                                                     p_application);
        v_wanted := v_assistant.model;
    end if;
    if v_wanted is null then
        select m.* into v_model from public.models m
        where m.enabled and (v_user.models is null or m.id = any (v_user.models))
        order by m.id = p_default_model desc, m.is_default desc, m.id
        limit 1;
    else
        select m.* into v_model from public.models m
        where m.id = v_wanted and m.enabled
          and (v_user.models is null or m.id = any (v_user.models));
    end if;
    if v_model.id is null then
        if v_wanted is null then
            raise exception 'no model is available to you; ask the operator for access'
                using errcode = 'JL403', detail = 'model';
        end if;
        raise exception 'the model ''%'' is unknown or not available to you', v_wanted
            using errcode = 'JL403', detail = 'model';
    end if;
    if v_user.balance_usd is not null then
        if v_user.balance_usd - public.jelly_spent(v_user)
           - coalesce((select sum(r.reserved_usd) from public.runs r
                       where r.user_id = v_user.id and r.status in ('pending', 'running')), 0)
           <= 0 then
            raise exception 'budget exceeded'
                using errcode = 'JL402', detail = coalesce(v_user.budget_period, 'balance');
        end if;
        v_estimate := greatest(coalesce(v_user.last_run_usd, 0),
                               (greatest(p_estimate_input, 0) * v_model.input_price
                                + greatest(p_estimate_output, 0) * v_model.output_price) / 1000000);
    end if;
    v_ticket := public.jelly_start_run(p_token, p_greeting, p_conversation_id, p_application,
                                       p_multitask, p_owner, v_model.id, p_message, p_memory,
                                       p_timeout, p_assistant_id);
    if v_estimate is not null then
        update public.runs set reserved_usd = v_estimate where id = (v_ticket ->> 'run_id')::uuid;
    end if;
    return v_ticket || jsonb_build_object(
        'model', v_model.id, 'input_price', v_model.input_price,
        'output_price', v_model.output_price, 'reserved_usd', v_estimate);
end;
$$;

-- jelly_finish_run plus the run's usage rows, its cost added to the user's spending
-- and its reservation released (the run is no longer active), in one transaction.
-- Idempotent: a run that already ended records nothing more.
create or replace function public.jelly_finish_metered_run(
    p_run_id uuid,
    p_status text,
    p_question text default null,
    p_answer text default null,
    p_sources jsonb default '[]'::jsonb,
    p_tool_calls jsonb default '[]'::jsonb,
    p_input_tokens integer default null,
    p_output_tokens integer default null,
    p_error text default null,
    p_title text default null,
    p_usage jsonb default '[]'::jsonb
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
    v_done jsonb;
    v_used jsonb;
begin
    select * into v_run from public.runs r where r.id = p_run_id for update;
    v_done := public.jelly_finish_run(p_run_id, p_status, p_question, p_answer, p_sources,
                                      p_tool_calls, p_input_tokens, p_output_tokens, p_error,
                                      p_title);
    if v_run.status not in ('pending', 'running') then
        -- ended before: its cost is what its usage rows of the answer say
        return v_done || jsonb_build_object(
            'cost_usd', (select coalesce(sum(s.cost_usd), 0) from public.usage s
                         where s.run_id = p_run_id and s.kind = 'answer'),
            'model', v_run.model);
    end if;
    -- the reservation ends with the run (only active runs' reservations count)
    v_used := public.jelly_insert_usage(v_run.user_id, p_run_id, v_run.application, v_run.model,
                                        p_usage, true);
    return v_done || v_used || jsonb_build_object('model', v_run.model);
end;
$$;

-- Model calls of a run made after its end (its conversation's title): recorded
-- and added to the user's spending. Not idempotent.
create or replace function public.jelly_record_usage(p_run_id uuid, p_usage jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
begin
    select * into v_run from public.runs r where r.id = p_run_id;
    if v_run.id is null then
        raise exception 'run not found' using errcode = 'JL404';
    end if;
    return public.jelly_insert_usage(v_run.user_id, p_run_id, v_run.application, v_run.model,
                                     p_usage);
end;
$$;

-- ---------------------------------------------------------------- registry

-- Create or replace a model (admin PUT); prices are decimal strings.
create or replace function public.jelly_put_model(
    p_id text, p_name text, p_input_price text, p_output_price text,
    p_context_window integer default null, p_enabled boolean default true,
    p_provider text default 'openai'
)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.models as m (id, name, input_price, output_price, context_window,
                                    enabled, provider)
    values (p_id, p_name, p_input_price::numeric, p_output_price::numeric, p_context_window,
            coalesce(p_enabled, true), coalesce(p_provider, 'openai'))
    on conflict (id) do update set
        name = excluded.name, input_price = excluded.input_price,
        output_price = excluded.output_price, context_window = excluded.context_window,
        enabled = excluded.enabled, provider = excluded.provider,
        updated_at = clock_timestamp()
    returning public.jelly_model_json(m)
$$;

-- A model registered when missing (startup: the configured model, MODEL_PRICES);
-- an existing one keeps its prices. p_default: it becomes the default model.
create or replace function public.jelly_ensure_model(
    p_id text, p_name text, p_input_price text, p_output_price text,
    p_default boolean default false
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_model public.models;
begin
    insert into public.models (id, name, input_price, output_price)
    values (p_id, p_name, p_input_price::numeric, p_output_price::numeric)
    on conflict (id) do nothing;
    if p_default then
        update public.models set is_default = (id = p_id) where is_default <> (id = p_id);
    end if;
    select * into v_model from public.models m where m.id = p_id;
    return public.jelly_model_json(v_model);
end;
$$;

create or replace function public.jelly_delete_model(p_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    delete from public.models where id = p_id;
    if not found then
        raise exception 'model not found' using errcode = 'JL404';
    end if;
    return jsonb_build_object('deleted', p_id);
end;
$$;

-- The models a token's user may use (all enabled ones for an unknown token: reading
-- creates nothing); `default` marks the one a message without `model` gets.
create or replace function public.jelly_user_models(p_token text, p_default_model text default null)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with allowed as (
        select m.*, row_number() over (order by m.id = p_default_model desc, m.is_default desc,
                                       m.id) as rank
        from public.models m
        left join public.users u on u.token = p_token
        where m.enabled and (u.models is null or m.id = any (u.models))
    )
    select coalesce(jsonb_agg(jsonb_build_object(
        'id', a.id, 'name', a.name, 'provider', a.provider, 'input_price', a.input_price,
        'output_price', a.output_price, 'context_window', a.context_window,
        'default', a.rank = 1) order by a.id), '[]'::jsonb)
    from allowed a
$$;

-- ---------------------------------------------------------------- access

create or replace function public.jelly_user_access_json(p_user public.users)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'user_id', p_user.id, 'models', to_jsonb(p_user.models),
        'balance_usd', p_user.balance_usd, 'spent_usd', public.jelly_spent(p_user),
        'period', p_user.budget_period,
        'remaining_usd', p_user.balance_usd - public.jelly_spent(p_user))
$$;

-- Admin PATCH /users/<id>: only the fields with p_set_* true change (null is a
-- value: all models, unlimited, all time). A new period recounts the spending.
create or replace function public.jelly_set_user_access(
    p_user_id bigint,
    p_set_models boolean, p_models jsonb,
    p_set_balance boolean, p_balance text,
    p_set_period boolean, p_period text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_user public.users;
    v_unknown text;
begin
    select * into v_user from public.users u where u.id = p_user_id for update;
    if v_user.id is null then
        raise exception 'user not found' using errcode = 'JL404';
    end if;
    if p_set_models and p_models is not null then
        select e into v_unknown from jsonb_array_elements_text(p_models) e
        where not exists (select 1 from public.models m where m.id = e) limit 1;
        if v_unknown is not null then
            raise exception 'unknown model ''%''', v_unknown using errcode = 'JL400', detail = 'models';
        end if;
    end if;
    update public.users u set
        models = case when p_set_models then
                     (select array_agg(distinct e) from jsonb_array_elements_text(p_models) e)
                 else u.models end,
        balance_usd = case when p_set_balance then p_balance::numeric else u.balance_usd end,
        budget_period = case when p_set_period then p_period else u.budget_period end
    where u.id = p_user_id
    returning * into v_user;
    if p_set_period then
        update public.users u set
            spent_since = public.jelly_period_start(u.budget_period),
            spent_usd = coalesce((select sum(s.cost_usd) from public.usage s
                                  where s.user_id = u.id
                                    and s.created_at >= public.jelly_period_start(u.budget_period)), 0)
        where u.id = p_user_id
        returning * into v_user;
    end if;
    return public.jelly_user_access_json(v_user);
end;
$$;

-- GET /me: null for an unknown token (nothing is created).
create or replace function public.jelly_me(p_token text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select public.jelly_user_access_json(u) from public.users u where u.token = p_token
$$;

-- A conversation's default model (null: the server's default); the model must be
-- one the user may use (JL403), the conversation theirs (JL404).
create or replace function public.jelly_set_conversation_model(p_token text, p_id uuid, p_model text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_user public.users;
    v_conv uuid;
begin
    select * into v_user from public.users u where u.token = p_token;
    select c.id into v_conv from public.conversations c
    where c.id = p_id and c.user_id = v_user.id;
    if v_conv is null then
        raise exception 'conversation not found' using errcode = 'JL404';
    end if;
    if p_model is not null and not exists (
            select 1 from public.models m
            where m.id = p_model and m.enabled
              and (v_user.models is null or m.id = any (v_user.models))) then
        raise exception 'the model ''%'' is unknown or not available to you', p_model
            using errcode = 'JL403', detail = 'model';
    end if;
    update public.conversations set model = p_model where id = v_conv;
    return jsonb_build_object('conversation_id', v_conv, 'model', p_model);
end;
$$;

-- ---------------------------------------------------------------- usage

-- Usage per UTC day and model, newest day first: of the token's user (p_token), or
-- of everyone, narrowed by user and application (admin).
create or replace function public.jelly_usage(
    p_token text default null,
    p_user_id bigint default null,
    p_application text default null,
    p_from timestamptz default null,
    p_to timestamptz default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'day', t.day, 'model', t.model, 'runs', t.runs, 'input_tokens', t.input_tokens,
        'output_tokens', t.output_tokens, 'cost_usd', t.cost_usd)
        order by t.day desc, t.model), '[]'::jsonb)
    from (
        select to_char(s.created_at at time zone 'UTC', 'YYYY-MM-DD') as day, s.model,
               count(distinct s.run_id) as runs, sum(s.input_tokens) as input_tokens,
               sum(s.output_tokens) as output_tokens, sum(s.cost_usd) as cost_usd
        from public.usage s
        where (p_token is null or s.user_id = (select u.id from public.users u
                                               where u.token = p_token))
          and (p_user_id is null or s.user_id = p_user_id)
          and (p_application is null or s.application = p_application)
          and (p_from is null or s.created_at >= p_from)
          and (p_to is null or s.created_at < p_to)
        group by 1, 2
    ) t
$$;

select public.jelly_server_only(array[
        'public.jelly_period_start(text)',
        'public.jelly_spent(public.users)',
        'public.jelly_cost(text, integer, integer)',
        'public.jelly_model_json(public.models)',
        'public.jelly_insert_usage(bigint, uuid, text, text, jsonb, boolean)',
        'public.jelly_start_metered_run(text, text, uuid, text, text, text, text, text, integer, double precision, text, integer, integer, text)',
        'public.jelly_finish_metered_run(uuid, text, text, text, jsonb, jsonb, integer, integer, text, text, jsonb)',
        'public.jelly_record_usage(uuid, jsonb)',
        'public.jelly_put_model(text, text, text, text, integer, boolean, text)',
        'public.jelly_ensure_model(text, text, text, text, boolean)',
        'public.jelly_delete_model(text)',
        'public.jelly_user_models(text, text)',
        'public.jelly_user_access_json(public.users)',
        'public.jelly_set_user_access(bigint, boolean, jsonb, boolean, text, boolean, text)',
        'public.jelly_me(text)',
        'public.jelly_set_conversation_model(text, uuid, text)',
        'public.jelly_usage(text, bigint, text, timestamptz, timestamptz)'
    ]);

notify pgrst, 'reload schema';
